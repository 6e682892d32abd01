//! Identifiers: nodes, connections and requests.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A node's 128-bit identity, drawn from the node's seed.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(pub u128);

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({self})")
    }
}

impl fmt::Display for NodeId {
    /// The first 8 hex digits, enough to tell nodes apart in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", (self.0 >> 96) as u32)
    }
}

/// A connection handle, chosen by the core (outbound) or given by the runtime (inbound).
///
/// The core allocates outbound ids with the high bit set; runtimes must give inbound
/// connections ids below `1 << 63` (see [`ConnId::is_outbound`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

impl ConnId {
    /// The bit that marks connections the core itself asked to dial.
    pub const OUTBOUND_BIT: u64 = 1 << 63;

    /// Whether this id was allocated by the core for a dial.
    pub fn is_outbound(self) -> bool {
        self.0 & Self::OUTBOUND_BIT != 0
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_outbound() {
            write!(f, "out#{}", self.0 & !Self::OUTBOUND_BIT)
        } else {
            write!(f, "in#{}", self.0)
        }
    }
}

/// The id of a remote call made by this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RequestId(pub u64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conn_ids_tell_direction() {
        assert!(ConnId(ConnId::OUTBOUND_BIT | 3).is_outbound());
        assert!(!ConnId(3).is_outbound());
        assert_eq!(ConnId(3).to_string(), "in#3");
        assert_eq!(ConnId(ConnId::OUTBOUND_BIT | 3).to_string(), "out#3");
    }

    #[test]
    fn node_id_display_is_short() {
        assert_eq!(NodeId(0xdead_beef_u128 << 96).to_string(), "deadbeef");
    }
}

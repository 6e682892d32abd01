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
    /// All 32 hex digits; with `{:#}`, the first 8 (enough to tell nodes apart in logs).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            write!(f, "{:08x}", (self.0 >> 96) as u32)
        } else {
            write!(f, "{:032x}", self.0)
        }
    }
}

impl std::str::FromStr for NodeId {
    type Err = ParseNodeIdError;

    /// Parses 1 to 32 hex digits (what `Display` prints).
    ///
    /// ```
    /// use chaski_proto::NodeId;
    /// let id = NodeId(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
    /// assert_eq!(id.to_string().parse::<NodeId>(), Ok(id));
    /// assert!("not hex".parse::<NodeId>().is_err());
    /// ```
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.len() > 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ParseNodeIdError(s.chars().take(40).collect()));
        }
        u128::from_str_radix(s, 16)
            .map(NodeId)
            .map_err(|_| ParseNodeIdError(s.to_string()))
    }
}

/// A string that is not a node id (1 to 32 hex digits).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a node id (1 to 32 hex digits): {0:?}")]
pub struct ParseNodeIdError(String);

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
    fn node_ids_print_whole_and_parse_back() {
        let id = NodeId((0xdead_beef_u128 << 96) | 7);
        assert_eq!(id.to_string(), "deadbeef000000000000000000000007");
        assert_eq!(format!("{id:#}"), "deadbeef");
        assert_eq!(id.to_string().parse(), Ok(id));
        assert_eq!("7".parse(), Ok(NodeId(7)));
        assert!("".parse::<NodeId>().is_err());
        assert!("g".parse::<NodeId>().is_err());
        assert!("1".repeat(33).parse::<NodeId>().is_err());
    }
}

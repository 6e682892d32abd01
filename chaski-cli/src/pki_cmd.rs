//! `chaski ca init DIR` and `chaski cert issue NAME --ca DIR`: a cluster CA and the node
//! certificates it signs, for `--tls-dir`.

use std::path::{Path, PathBuf};

use clap::Subcommand;

use chaski_api::pki::{save_identity, Ca};

use crate::failure::{Failure, USAGE};

/// `chaski ca ...`.
#[derive(Subcommand, Debug)]
pub enum CaAction {
    /// Create a CA in DIR: ca.pem (give it to every node) and ca.key (owner-only; keep it on
    /// the machine that issues certificates).
    Init {
        /// Where to write it.
        dir: PathBuf,
    },
}

/// `chaski cert ...`.
#[derive(Subcommand, Debug)]
pub enum CertAction {
    /// Issue a certificate for node NAME, signed by the CA in --ca, into --out (default
    /// ./NAME): ca.pem, node.pem and node.key (owner-only), for `--tls-dir`.
    Issue {
        /// The node's name (in the certificate; its id is derived from its key).
        name: String,
        /// The CA's directory (from `chaski ca init`).
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        /// Where to write the node's files.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Days the certificate is valid (at least 1).
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
}

/// Runs `chaski ca ACTION`.
pub fn ca(action: CaAction) -> Result<(), Failure> {
    match action {
        CaAction::Init { dir } => init(&dir),
    }
}

/// Runs `chaski cert ACTION`.
pub fn cert(action: CertAction) -> Result<(), Failure> {
    match action {
        CertAction::Issue {
            name,
            ca,
            out,
            days,
        } => {
            let out = out.unwrap_or_else(|| PathBuf::from(&name));
            issue(&name, &ca, &out, days)
        }
    }
}

/// Creates a CA in `dir` (refusing to replace one).
fn init(dir: &Path) -> Result<(), Failure> {
    let ca = Ca::new()?;
    ca.save(dir)?;
    crate::say!(
        "cluster CA written to {} (ca.pem; ca.key is readable by you only: keep it off the nodes)",
        dir.display()
    );
    crate::say!(
        "next: chaski cert issue NAME --ca {} (one per node)",
        dir.display()
    );
    Ok(())
}

/// Issues a certificate for node `name`, signed by the CA in `ca_dir`, into `out`.
fn issue(name: &str, ca_dir: &Path, out: &Path, days: u32) -> Result<(), Failure> {
    if days == 0 {
        // It would be expired the moment it is written.
        return Err(Failure {
            code: USAGE,
            message: "--days must be at least 1".into(),
        });
    }
    let ca = Ca::load(ca_dir)?;
    let (identity, id) = ca.issue(name, days)?;
    save_identity(&identity, out)?;
    crate::say!(
        "{name}: node id {id}, valid {days} days; written to {} (ca.pem, node.pem, node.key)",
        out.display()
    );
    crate::say!("run it with: --tls-dir {}", out.display());
    Ok(())
}

//! `chaski ca init DIR` and `chaski cert issue NAME --ca DIR`: a cluster CA and the node
//! certificates it signs, for `--tls-dir`.

use std::path::Path;

use chaski_api::pki::{save_identity, Ca};

use crate::failure::Failure;

/// Creates a CA in `dir` (refusing to replace one).
pub fn init(dir: &Path) -> Result<(), Failure> {
    let ca = Ca::new()?;
    ca.save(dir)?;
    println!(
        "cluster CA written to {} (ca.pem; ca.key is readable by you only: keep it off the nodes)",
        dir.display()
    );
    println!(
        "next: chaski cert issue NAME --ca {} (one per node)",
        dir.display()
    );
    Ok(())
}

/// Issues a certificate for node `name`, signed by the CA in `ca_dir`, into `out`.
pub fn issue(name: &str, ca_dir: &Path, out: &Path, days: u32) -> Result<(), Failure> {
    let ca = Ca::load(ca_dir)?;
    let (identity, id) = ca.issue(name, days)?;
    save_identity(&identity, out)?;
    println!(
        "{name}: node id {id}, valid {days} days; written to {} (ca.pem, node.pem, node.key)",
        out.display()
    );
    println!("run it with: --tls-dir {}", out.display());
    Ok(())
}

//! Compiles the internal gRPC services (`proto/control.proto`) with protoc.
//!
//! Without protoc (a fresh machine, before `cargo xtask` has installed it) the checked-in
//! copy `src/control.generated.rs` is used instead, so `cargo xtask` itself always builds.

use std::path::PathBuf;

const GENERATED: &str = "pylon.control.v1.rs";
const CHECKED_IN: &str = "src/control.generated.rs";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/control.proto");
    println!("cargo:rerun-if-changed={CHECKED_IN}");
    println!("cargo:rerun-if-env-changed=PROTOC");
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let has_protoc = std::env::var_os("PROTOC").is_some()
        || std::process::Command::new("protoc")
            .arg("--version")
            .output()
            .is_ok();
    if !has_protoc {
        std::fs::copy(CHECKED_IN, out.join(GENERATED))?;
        return Ok(());
    }
    tonic_prost_build::configure().compile_protos(&["proto/control.proto"], &["proto"])?;
    let fresh = std::fs::read_to_string(out.join(GENERATED))?;
    if std::fs::read_to_string(CHECKED_IN).ok().as_deref() != Some(fresh.as_str()) {
        println!(
            "cargo:warning=proto/{CHECKED_IN} is stale: copy {} over it",
            out.join(GENERATED).display()
        );
    }
    Ok(())
}

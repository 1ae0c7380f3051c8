//! Compiles the internal gRPC services (`proto/*.proto`) with protoc.
//!
//! Without protoc (a fresh machine, before `cargo xtask` has installed it) the checked-in
//! copies `src/*.generated.rs` are used instead, so `cargo xtask` itself always builds.

use std::path::PathBuf;

/// (generated file, checked-in copy) per package.
const PACKAGES: [(&str, &str); 2] = [
    ("pylon.control.v1.rs", "src/control.generated.rs"),
    ("pylon.app.v1.rs", "src/app.generated.rs"),
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/control.proto");
    println!("cargo:rerun-if-changed=proto/app.proto");
    for (_, checked_in) in PACKAGES {
        println!("cargo:rerun-if-changed={checked_in}");
    }
    println!("cargo:rerun-if-env-changed=PROTOC");
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let has_protoc = std::env::var_os("PROTOC").is_some()
        || std::process::Command::new("protoc")
            .arg("--version")
            .output()
            .is_ok();
    if !has_protoc {
        for (generated, checked_in) in PACKAGES {
            std::fs::copy(checked_in, out.join(generated))?;
        }
        return Ok(());
    }
    tonic_prost_build::configure()
        .compile_protos(&["proto/control.proto", "proto/app.proto"], &["proto"])?;
    for (generated, checked_in) in PACKAGES {
        let fresh = std::fs::read_to_string(out.join(generated))?;
        if std::fs::read_to_string(checked_in).ok().as_deref() != Some(fresh.as_str()) {
            println!(
                "cargo:warning=proto/{checked_in} is stale: copy {} over it",
                out.join(generated).display()
            );
        }
    }
    Ok(())
}

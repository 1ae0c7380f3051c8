//! Compiles the internal gRPC services (`proto/*.proto`) with protoc.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/control.proto");
    let has_protoc = std::env::var_os("PROTOC").is_some()
        || std::process::Command::new("protoc")
            .arg("--version")
            .output()
            .is_ok();
    if !has_protoc {
        return Err("protoc is not installed: run `cargo xtask test` (installs it as root) \
                    or `sudo apt-get install protobuf-compiler`"
            .into());
    }
    tonic_prost_build::configure().compile_protos(&["proto/control.proto"], &["proto"])?;
    Ok(())
}

//! `cargo xtask codegen [--check]`: generates `proto`'s gRPC code from `proto/proto/*.proto`
//! into the checked-in `proto/src/*.generated.rs` (so building Pylon needs no protoc), or,
//! with `--check`, fails when the checked-in code differs from what the `.proto` files give
//! (CI runs it through `cargo xtask test`, as `build-ebpf --check` for the kernel objects).

use std::path::Path;

#[derive(clap::Args)]
pub struct CodegenArgs {
    /// Only check that the checked-in code matches the `.proto` files.
    #[arg(long)]
    check: bool,
}

impl CodegenArgs {
    pub fn check() -> Self {
        CodegenArgs { check: true }
    }
}

/// (`.proto` file, what prost names its output, the checked-in copy), per package.
const PACKAGES: [(&str, &str, &str); 2] = [
    (
        "control.proto",
        "pylon.control.v1.rs",
        "control.generated.rs",
    ),
    ("app.proto", "pylon.app.v1.rs", "app.generated.rs"),
];

pub fn run(args: CodegenArgs) -> anyhow::Result<()> {
    crate::system::ensure(crate::system::FOR_BUILD)?;
    let proto = crate::procs::root().join("proto");
    let scratch = tempfile::tempdir()?;
    let sources: Vec<_> = PACKAGES
        .iter()
        .map(|(file, _, _)| proto.join("proto").join(file))
        .collect();
    tonic_prost_build::configure()
        .out_dir(scratch.path())
        .compile_protos(&sources, &[proto.join("proto")])
        .map_err(|e| anyhow::anyhow!("generating the gRPC code: {e}"))?;
    let mut stale = Vec::new();
    for (_, generated, checked_in) in PACKAGES {
        let fresh = std::fs::read_to_string(scratch.path().join(generated))?;
        let target = proto.join("src").join(checked_in);
        if args.check {
            if read(&target) != fresh {
                stale.push(checked_in);
            }
        } else {
            std::fs::write(&target, fresh)?;
            println!("generated proto/src/{checked_in}");
        }
    }
    anyhow::ensure!(
        stale.is_empty(),
        "the checked-in gRPC code does not match proto/proto/*.proto: {} (run `cargo xtask codegen` and commit proto/src)",
        stale.join(", ")
    );
    if args.check {
        println!("gRPC code matches its .proto files");
    }
    Ok(())
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

//! `cargo xtask build-ebpf [--check]`: compiles the kernel programs (`ebpf/src/bpf/*.bpf.c`)
//! with clang into `ebpf/obj/*.bpf.o`, which are committed so that building Pylon needs no
//! clang. `--check` compiles into a temporary directory and fails if a committed object
//! differs from its source (CI runs it through `cargo xtask test`).

use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(clap::Args)]
pub struct BuildEbpfArgs {
    /// Only check that the committed objects match the sources.
    #[arg(long)]
    check: bool,
}

impl BuildEbpfArgs {
    pub fn check() -> Self {
        BuildEbpfArgs { check: true }
    }
}

fn sources(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut sources: Vec<PathBuf> = std::fs::read_dir(dir.join("src/bpf"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".bpf.c"))
        .collect();
    sources.sort();
    Ok(sources)
}

/// Compiles one program. Debug info (for BTF) names paths relative to `ebpf/`, so the
/// object is the same wherever the repository is checked out.
fn compile(ebpf: &Path, source: &Path, out: &Path) -> anyhow::Result<()> {
    let multiarch = format!("/usr/include/{}-linux-gnu", std::env::consts::ARCH);
    let status = Command::new("clang")
        .current_dir(ebpf)
        .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
        .arg(format!("-I{multiarch}"))
        .arg(format!("-fdebug-prefix-map={}=.", ebpf.display()))
        .arg("-c")
        .arg(source.strip_prefix(ebpf).unwrap_or(source))
        .arg("-o")
        .arg(out)
        .status()?;
    anyhow::ensure!(status.success(), "clang failed on {}", source.display());
    Ok(())
}

/// The object without debug sections and `.comment` (via llvm-objcopy when present).
fn comparable(object: &Path, scratch: &Path) -> anyhow::Result<Vec<u8>> {
    let stripped = Command::new("llvm-objcopy")
        .args(["--strip-debug", "--remove-section=.comment"])
        .arg(object)
        .arg(scratch)
        .status()
        .is_ok_and(|s| s.success());
    Ok(std::fs::read(if stripped { scratch } else { object }).unwrap_or_default())
}

fn object_name(source: &Path) -> String {
    let name = source
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    name.trim_end_matches(".c").to_owned() + ".o"
}

pub fn run(args: BuildEbpfArgs) -> anyhow::Result<()> {
    crate::system::ensure(crate::system::FOR_EBPF)?;
    let ebpf = crate::procs::root().join("ebpf");
    let obj = ebpf.join("obj");
    let scratch = tempfile_dir()?;
    let mut stale = Vec::new();
    for source in sources(&ebpf)? {
        let name = object_name(&source);
        let target = if args.check {
            scratch.join(&name)
        } else {
            obj.join(&name)
        };
        compile(&ebpf, &source, &target)?;
        if args.check {
            // Compared without DWARF and the compiler's identification, which differ
            // between clang builds; code, maps and BTF must match.
            let fresh = comparable(&target, &scratch.join(format!("{name}.fresh")))?;
            let committed =
                comparable(&obj.join(&name), &scratch.join(format!("{name}.committed")))?;
            if fresh != committed {
                stale.push(name);
            }
        } else {
            println!("built ebpf/obj/{name}");
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    anyhow::ensure!(
        stale.is_empty(),
        "the committed eBPF objects do not match their sources: {} (run `cargo xtask build-ebpf` and commit ebpf/obj)",
        stale.join(", ")
    );
    if args.check {
        println!("eBPF objects match their sources");
    }
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("pylon-ebpf-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

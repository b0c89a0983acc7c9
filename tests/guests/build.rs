//! Links the guest as a non-PIE ELF whose entry code sits at guest-physical
//! 0x8000 (see link.ld). Only for the bare-metal target; a host build (e.g.
//! `cargo check --workspace` without --target) gets a stub binary.
use std::env;

fn main() {
    let dir = env::var("CARGO_MANIFEST_DIR").unwrap();
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=link.ld");
    if env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        println!("cargo:rustc-link-arg-bin=keel-test-guest=-T{dir}/link.ld");
        // The target defaults to static-pie; keel loads at p_paddr and never
        // relocates, so link a plain ET_EXEC at the linker-script addresses.
        println!("cargo:rustc-link-arg-bin=keel-test-guest=--no-pie");
        println!("cargo:rustc-link-arg-bin=keel-test-guest=--no-dynamic-linker");
        println!("cargo:rustc-link-arg-bin=keel-test-guest=-znorelro");
        println!("cargo:rustc-link-arg-bin=keel-test-guest=--build-id=none");
    }
}

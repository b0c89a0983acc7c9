//! Links the kernel with keel's linker script (only for the bare-metal target).
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    println!("cargo:rerun-if-changed={dir}/linker.ld");
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        println!("cargo:rustc-link-arg-bin=keel=-T{dir}/linker.ld");
        // GRUB loads the image at its link address without relocating it: have
        // the linker also write the relocated values, so the image is correct
        // at its link address, while the bootloader crate relocates as usual.
        println!("cargo:rustc-link-arg-bin=keel=--apply-dynamic-relocs");
        println!("cargo:rustc-link-arg-bin=keel=-zmax-page-size=4096");
    }
}

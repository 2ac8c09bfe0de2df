//! Embeds `tauri.conf.json`, the capabilities and the `ui/` files into the binary.

fn main() {
    tauri_build::build();
}

//! Tauri's build helper: reads `tauri.conf.json` and `capabilities/`, embeds the icons and the
//! fallback page (`dist/`), and on Windows the application manifest and resources.

fn main() {
    tauri_build::build();
}

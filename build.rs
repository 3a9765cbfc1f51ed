//! Tells cargo that the embedded files are inputs: `include_dir!` does not, so without this
//! an edited asset would not be rebuilt into the binary.

fn main() {
    println!("cargo:rerun-if-changed=assets");
    println!("cargo:rerun-if-changed=schema.sql");
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=src/api/openapi.json");
}

fn main() {
    // A stable soname, so consumers record librivet.so.0 and minor releases can replace it.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,librivet.so.0");
}

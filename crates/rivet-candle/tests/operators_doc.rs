//! The Candle guide's operator list (docs/candle.md, between its `operators:begin` and
//! `operators:end` markers) is generated from the executor's operator registry: this test fails
//! when they differ. `RIVET_BLESS=1 cargo test -p rivet-candle --test operators_doc` rewrites it.

use std::path::Path;

const BEGIN: &str = "<!-- operators:begin: generated from the operator registry by `RIVET_BLESS=1 cargo test -p rivet-candle --test operators_doc` -->";
const END: &str = "<!-- operators:end -->";

/// The list as Markdown: one line per family, each operator with its opsets unless one
/// definition covers every opset (an operator defined apart for older opsets lists each range).
fn render() -> String {
    let ops = rivet_candle::operators().expect("the registry builds");
    let mut out = String::new();
    let mut families: Vec<&str> = Vec::new();
    for o in &ops {
        if !families.contains(&o.family) {
            families.push(o.family);
        }
    }
    let mut total = 0;
    for family in families {
        // (domain, name) -> each definition's opsets, in registry order.
        let mut defs: Vec<((&str, &str), Vec<&str>)> = Vec::new();
        for o in ops.iter().filter(|o| o.family == family) {
            match defs.iter_mut().find(|(key, _)| *key == (o.domain, o.name)) {
                Some((_, ranges)) => ranges.push(&o.opsets),
                None => defs.push(((o.domain, o.name), vec![&o.opsets])),
            }
        }
        let names: Vec<String> = defs
            .iter()
            .map(|((domain, name), ranges)| {
                let domain = if *domain == "ai.onnx" { String::new() } else { format!("{domain}.") };
                if ranges[..] == ["1+"] {
                    format!("{domain}{name}")
                } else {
                    format!("{domain}{name} (opsets {})", ranges.join(", "))
                }
            })
            .collect();
        total += names.len();
        out += &format!("- **{family}** ({}): {}\n", names.len(), names.join(", "));
    }
    out += &format!("\n{total} operators in all.\n");
    out
}

#[test]
fn the_guides_operator_list_is_the_registry() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/candle.md");
    let text = std::fs::read_to_string(&path).expect("docs/candle.md");
    let (Some(a), Some(b)) = (text.find(BEGIN), text.find(END)) else {
        panic!("docs/candle.md lacks the markers:\n{BEGIN}\n{END}");
    };
    let current = &text[a + BEGIN.len()..b];
    let wanted = format!("\n{}", render());
    if current == wanted {
        return;
    }
    if std::env::var_os("RIVET_BLESS").is_some() {
        let updated = format!("{}{}{}{}", &text[..a], BEGIN, wanted, &text[b..]);
        std::fs::write(&path, updated).expect("write docs/candle.md");
        return;
    }
    panic!(
        "docs/candle.md's operator list differs from the registry; regenerate it with \
         `RIVET_BLESS=1 cargo test -p rivet-candle --test operators_doc`.\nwanted:\n{wanted}\nfound:\n{current}"
    );
}

#[test]
fn every_operator_is_listed_once_with_its_family() {
    let ops = rivet_candle::operators().expect("the registry builds");
    let mut seen = std::collections::HashSet::new();
    for o in &ops {
        assert!(seen.insert((o.domain, o.name, o.opsets.clone())), "{} listed twice", o.name);
    }
    let find =
        |name: &str| ops.iter().find(|o| o.name == name).unwrap_or_else(|| panic!("{name} is not listed"));
    assert_eq!(find("Gemm").family, "matrix products");
    assert_eq!(find("Conv").family, "convolution");
    assert_eq!(find("Resize").opsets, "11+");
    assert_eq!(find("If").family, "control flow");
    assert_eq!(find("SequenceAt").family, "sequence");
    assert!(!ops.iter().any(|o| o.name == "Det"), "Det is not implemented");
}

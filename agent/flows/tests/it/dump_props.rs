//! The dump parser never panics: random bytes, every truncation of a real-looking dump, random
//! attribute values and random tree shapes give a tree or a typed error.

use phonefarm_flows::dump::{DumpError, parse_dump, parse_dump_bytes};
use proptest::prelude::*;

use crate::synth;

#[test]
fn synthetic_screen_parses_with_the_requested_size() {
    let tree = parse_dump(&synth::screen(200)).unwrap();
    assert_eq!(tree.len(), 200);
    let last = &tree.nodes()[199];
    assert_eq!(last.content_desc, "Like");
    assert_eq!(tree.nodes()[2].text, "Caption 0.0 \"Tom & Jerry\" <3 #tag0");
}

#[test]
fn every_truncation_is_an_error_never_a_panic() {
    let xml = synth::screen(16);
    let end = xml.find("</hierarchy>").unwrap() + "</hierarchy>".len();
    // Cut right after the XML declaration: a complete document with no root.
    let decl_end = xml.find("?>").unwrap() + 2;
    let mut truncated = 0;
    for cut in 0..end {
        let Some(prefix) = xml.get(..cut) else {
            continue;
        };
        match parse_dump(prefix) {
            Ok(tree) => panic!(
                "a dump cut at {cut} of {end} parsed into {} nodes",
                tree.len()
            ),
            Err(DumpError::Truncated { .. }) => truncated += 1,
            Err(e) => assert!(cut <= decl_end, "cut at {cut}: {e}"),
        }
    }
    assert!(
        truncated >= end - decl_end,
        "{truncated} truncations in {end} cuts"
    );
    assert_eq!(parse_dump(&xml[..end]).unwrap().len(), 16);
}

/// A random tree, as (depth-first) a list of child counts.
fn tree_xml(shape: &[usize]) -> (String, usize) {
    fn emit(shape: &[usize], at: &mut usize, out: &mut String, count: &mut usize) {
        let kids = shape.get(*at).copied().unwrap_or(0);
        *at += 1;
        *count += 1;
        out.push_str(&synth::node_open(
            0,
            &format!("n{count}"),
            "",
            "V",
            "",
            false,
            (0, 0, 1, 1),
        ));
        if kids == 0 {
            out.push_str("/>");
            return;
        }
        out.push('>');
        for _ in 0..kids {
            emit(shape, at, out, count);
        }
        out.push_str("</node>");
    }
    let mut out = String::from("<hierarchy>");
    let (mut at, mut count) = (0, 0);
    emit(shape, &mut at, &mut out, &mut count);
    out.push_str("</hierarchy>");
    (out, count)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_dump_bytes(&bytes);
        let mut framed = b"<hierarchy><node bounds=\"[0,0][1,1]\" text=\"".to_vec();
        framed.extend_from_slice(&bytes);
        framed.extend_from_slice(b"\"/></hierarchy>");
        let _ = parse_dump_bytes(&framed);
    }

    #[test]
    fn random_attribute_values_round_trip(
        text in any::<String>(),
        desc in "\\PC{0,20}",
        raw in "[ -~]{0,30}",
    ) {
        let xml = format!(
            "<hierarchy>{}/></hierarchy>",
            synth::node_open(0, &text, "a:id/b", "C", &desc, true, (1, 2, 3, 4))
        );
        let tree = parse_dump(&xml).unwrap();
        prop_assert_eq!(&tree.nodes()[0].text, &text);
        prop_assert_eq!(&tree.nodes()[0].content_desc, &desc);
        // Unescaped junk in a value or in the bounds: a tree or a typed error.
        let _ = parse_dump(&format!("<hierarchy><node text=\"{raw}\" bounds=\"[0,0][1,1]\"/></hierarchy>"));
        let _ = parse_dump(&format!("<hierarchy><node bounds=\"{raw}\"/></hierarchy>"));
    }

    #[test]
    fn random_tree_shapes_keep_their_structure(shape in proptest::collection::vec(0usize..4, 1..60)) {
        let (xml, count) = tree_xml(&shape);
        let tree = parse_dump(&xml).unwrap();
        prop_assert_eq!(tree.len(), count);
        for (i, node) in tree.nodes().iter().enumerate() {
            prop_assert_eq!(&node.text, &format!("n{}", i + 1));
            prop_assert!(node.subtree_end > i && node.subtree_end <= count);
            if let Some(p) = node.parent {
                prop_assert!(tree.is_descendant(i, p));
                prop_assert!(tree.children(p).any(|c| c == i));
                prop_assert_eq!(node.depth, tree.nodes()[p].depth + 1);
            } else {
                prop_assert_eq!(i, 0);
            }
        }
    }
}

//! Any bytes given to the dump parser (as a whole command output, so the XML extraction runs
//! too) yield a tree or a typed error, never a panic; a tree's structure is consistent.

#![no_main]

use libfuzzer_sys::fuzz_target;
use phonefarm_flows::dump::{extract_dump_xml, parse_dump_bytes};
use phonefarm_flows::selector::Selector;

fuzz_target!(|data: &[u8]| {
    let Ok(xml) = extract_dump_xml(data) else {
        return;
    };
    if let Ok(tree) = parse_dump_bytes(xml) {
        for (i, node) in tree.nodes().iter().enumerate() {
            assert!(node.subtree_end > i && node.subtree_end <= tree.len());
            if let Some(p) = node.parent {
                assert!(tree.is_descendant(i, p));
            }
        }
        let sel = Selector {
            clickable: Some(true),
            descendant_of: Some(Box::new(Selector {
                scrollable: Some(true),
                ..Selector::default()
            })),
            nth: Some(1),
            ..Selector::default()
        };
        let _ = sel.find_all(&tree);
    }
});

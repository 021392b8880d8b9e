//! Selector matching agrees with a naive reference on random trees and random selectors
//! (structure: child_of, descendant_of, has_child, nth).

use phonefarm_flows::dump::{UiTree, parse_dump};
use phonefarm_flows::selector::Selector;
use proptest::prelude::*;

const CLASSES: [&str; 3] = ["A", "B", "C"];

/// A random tree: per node (child count, class, clickable), depth-first.
fn build(nodes: &[(usize, usize, bool)]) -> UiTree {
    fn emit(nodes: &[(usize, usize, bool)], at: &mut usize, out: &mut String) {
        let Some(&(kids, class, click)) = nodes.get(*at) else {
            out.push_str("<node class=\"A\" bounds=\"[0,0][1,1]\"/>");
            *at += 1;
            return;
        };
        *at += 1;
        out.push_str(&format!(
            "<node class=\"{}\" clickable=\"{click}\" bounds=\"[0,0][1,1]\"",
            CLASSES[class]
        ));
        if kids == 0 || *at >= nodes.len() {
            out.push_str("/>");
            return;
        }
        out.push('>');
        for _ in 0..kids {
            if *at >= nodes.len() {
                break;
            }
            emit(nodes, at, out);
        }
        out.push_str("</node>");
    }
    let mut xml = String::from("<hierarchy>");
    let mut at = 0;
    emit(nodes, &mut at, &mut xml);
    xml.push_str("</hierarchy>");
    parse_dump(&xml).unwrap()
}

fn leaf(class: usize, clickable: Option<bool>) -> Selector {
    Selector {
        class: Some(CLASSES[class].into()),
        clickable,
        ..Selector::default()
    }
}

/// The obvious, slow definition.
fn naive(sel: &Selector, tree: &UiTree) -> Vec<usize> {
    let nodes = tree.nodes();
    let mut hits: Vec<usize> = (0..nodes.len())
        .filter(|&i| sel.matches_node(&nodes[i]))
        .filter(|&i| {
            sel.child_of.as_ref().is_none_or(|p| {
                let parents = naive(p, tree);
                nodes[i].parent.is_some_and(|par| parents.contains(&par))
            })
        })
        .filter(|&i| {
            sel.descendant_of.as_ref().is_none_or(|a| {
                let ancestors = naive(a, tree);
                let mut cur = nodes[i].parent;
                while let Some(p) = cur {
                    if ancestors.contains(&p) {
                        return true;
                    }
                    cur = nodes[p].parent;
                }
                false
            })
        })
        .filter(|&i| {
            sel.has_child.as_ref().is_none_or(|c| {
                let kids = naive(c, tree);
                kids.iter().any(|&k| nodes[k].parent == Some(i))
            })
        })
        .collect();
    if let Some(n) = sel.nth {
        hits = hits.get(n).copied().into_iter().collect();
    }
    hits
}

fn selector() -> impl Strategy<Value = Selector> {
    let base = (0..3usize, proptest::option::of(any::<bool>())).prop_map(|(c, k)| leaf(c, k));
    (
        base.clone(),
        proptest::option::of(base.clone()),
        proptest::option::of(base.clone()),
        proptest::option::of(base),
        proptest::option::of(0..4usize),
    )
        .prop_map(|(mut s, child_of, descendant_of, has_child, nth)| {
            s.child_of = child_of.map(Box::new);
            s.descendant_of = descendant_of.map(Box::new);
            s.has_child = has_child.map(Box::new);
            s.nth = nth;
            s
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn matching_agrees_with_the_naive_definition(
        nodes in proptest::collection::vec((0usize..4, 0usize..3, any::<bool>()), 1..40),
        sel in selector(),
    ) {
        let tree = build(&nodes);
        let expected = naive(&sel, &tree);
        prop_assert_eq!(sel.find_all(&tree), expected.clone());
        prop_assert_eq!(sel.find(&tree), expected.first().copied());
    }
}

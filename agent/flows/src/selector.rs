//! Selectors: data that names views on a screen.
//!
//! A [`Selector`] is a conjunction of attribute predicates (resource-id, exact or partial text and
//! content-desc, class, package, flags) with optional structure (`child_of`, `descendant_of` or
//! `has_child` another selector) and an optional `nth` pick among the matches in document order. A
//! [`Fallbacks`] list tries its selectors in order and takes the first that finds something: the
//! resource-id first, then content-desc/text, then structure, so a renamed id degrades to the next
//! alternative instead of failing. Both deserialize from the flow-pack TOML
//! (`[{ resource_id = "…" }, { content_desc = "Like", clickable = true }]`).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::dump::{Node, UiTree};

/// How deep `child_of` / `descendant_of` may nest; deeper is rejected by [`Selector::validate`].
pub const MAX_NESTING: usize = 8;

/// One alternative: every predicate that is set must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_contains: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_desc: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_desc_contains: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clickable: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selected: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkable: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub focused: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scrollable: Option<bool>,
    /// The node's parent matches this selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child_of: Option<Box<Selector>>,
    /// Some ancestor of the node matches this selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub descendant_of: Option<Box<Selector>>,
    /// Some direct child of the node matches this selector (a container holding a view).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub has_child: Option<Box<Selector>>,
    /// The match nearest below a node matching this selector (its top at or under the
    /// anchor's bottom, overlapping it horizontally): the field under its label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub below: Option<Box<Selector>>,
    /// The match nearest above a node matching this selector (its bottom at or over the
    /// anchor's top, overlapping it horizontally).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub above: Option<Box<Selector>>,
    /// Take only the n-th (0-based) of all matches in document order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nth: Option<usize>,
}

impl Selector {
    pub fn resource_id(id: impl Into<String>) -> Self {
        Self {
            resource_id: Some(id.into()),
            ..Self::default()
        }
    }

    pub fn text(text: impl Into<String>) -> Self {
        Self {
            text: Some(text.into()),
            ..Self::default()
        }
    }

    pub fn content_desc(desc: impl Into<String>) -> Self {
        Self {
            content_desc: Some(desc.into()),
            ..Self::default()
        }
    }

    /// Checks the selector is meaningful: at least one attribute predicate, no empty strings,
    /// bounded nesting. The message names the problem.
    pub fn validate(&self) -> Result<(), String> {
        self.validate_at(0)
    }

    fn validate_at(&self, depth: usize) -> Result<(), String> {
        if depth > MAX_NESTING {
            return Err(format!("structure nested deeper than {MAX_NESTING}"));
        }
        let strings = [
            ("resource_id", &self.resource_id),
            ("text_contains", &self.text_contains),
            ("content_desc_contains", &self.content_desc_contains),
            ("class", &self.class),
            ("package", &self.package),
        ];
        for (name, value) in strings {
            if value.as_deref() == Some("") {
                return Err(format!("{name} is empty"));
            }
        }
        let has_predicate = self.resource_id.is_some()
            || self.text.is_some()
            || self.text_contains.is_some()
            || self.content_desc.is_some()
            || self.content_desc_contains.is_some()
            || self.class.is_some()
            || self.package.is_some()
            || self.clickable.is_some()
            || self.enabled.is_some()
            || self.selected.is_some()
            || self.checked.is_some()
            || self.checkable.is_some()
            || self.focused.is_some()
            || self.scrollable.is_some();
        if !has_predicate {
            return Err("selector has no attribute predicate (it would match any node)".into());
        }
        for inner in [
            &self.child_of,
            &self.descendant_of,
            &self.has_child,
            &self.below,
            &self.above,
        ]
        .into_iter()
        .flatten()
        {
            inner.validate_at(depth + 1)?;
        }
        Ok(())
    }

    fn is_simple(&self) -> bool {
        self.child_of.is_none()
            && self.descendant_of.is_none()
            && self.has_child.is_none()
            && self.below.is_none()
            && self.above.is_none()
            && self.nth.is_none()
    }

    /// True if the node itself satisfies every attribute predicate (structure and `nth` are not
    /// considered).
    pub fn matches_node(&self, node: &Node) -> bool {
        fn eq(want: &Option<String>, have: &str) -> bool {
            want.as_deref().is_none_or(|w| w == have)
        }
        fn contains(want: &Option<String>, have: &str) -> bool {
            want.as_deref().is_none_or(|w| have.contains(w))
        }
        fn flag(want: Option<bool>, have: bool) -> bool {
            want.is_none_or(|w| w == have)
        }
        eq(&self.resource_id, &node.resource_id)
            && eq(&self.text, &node.text)
            && eq(&self.content_desc, &node.content_desc)
            && eq(&self.class, &node.class)
            && eq(&self.package, &node.package)
            && contains(&self.text_contains, &node.text)
            && contains(&self.content_desc_contains, &node.content_desc)
            && flag(self.clickable, node.clickable)
            && flag(self.enabled, node.enabled)
            && flag(self.selected, node.selected)
            && flag(self.checked, node.checked)
            && flag(self.checkable, node.checkable)
            && flag(self.focused, node.focused)
            && flag(self.scrollable, node.scrollable)
    }

    /// Every matching node, in document order.
    pub fn find_all(&self, tree: &UiTree) -> Vec<usize> {
        let nodes = tree.nodes();
        let mut hits: Vec<usize> = (0..nodes.len())
            .filter(|&i| self.matches_node(&nodes[i]))
            .collect();
        if let Some(parent_sel) = &self.child_of {
            let mut is_parent = vec![false; nodes.len()];
            for p in parent_sel.find_all(tree) {
                is_parent[p] = true;
            }
            hits.retain(|&i| nodes[i].parent.is_some_and(|p| is_parent[p]));
        }
        if let Some(anc_sel) = &self.descendant_of {
            let covered = covered_by(tree, &anc_sel.find_all(tree));
            hits.retain(|&i| covered[i]);
        }
        if let Some(child_sel) = &self.has_child {
            let mut is_child = vec![false; nodes.len()];
            for c in child_sel.find_all(tree) {
                is_child[c] = true;
            }
            hits.retain(|&i| tree.children(i).any(|c| is_child[c]));
        }
        if let Some(anchor) = &self.below {
            hits = nearest(tree, &hits, &anchor.find_all(tree), |a, h| {
                (h.y1 >= a.y2).then(|| h.y1 - a.y2)
            });
        }
        if let Some(anchor) = &self.above {
            hits = nearest(tree, &hits, &anchor.find_all(tree), |a, h| {
                (h.y2 <= a.y1).then(|| a.y1 - h.y2)
            });
        }
        if let Some(n) = self.nth {
            hits = hits.get(n).copied().into_iter().collect();
        }
        hits
    }

    /// The first matching node (or the `nth`), if any.
    pub fn find(&self, tree: &UiTree) -> Option<usize> {
        if self.is_simple() {
            tree.nodes().iter().position(|n| self.matches_node(n))
        } else {
            self.find_all(tree).first().copied()
        }
    }
}

/// For each anchor, the hit nearest to it by `distance` (None: not on that side) among those
/// overlapping it horizontally; the chosen hits in document order.
fn nearest(
    tree: &UiTree,
    hits: &[usize],
    anchors: &[usize],
    distance: impl Fn(&crate::dump::Bounds, &crate::dump::Bounds) -> Option<i32>,
) -> Vec<usize> {
    let nodes = tree.nodes();
    let mut chosen: Vec<usize> = anchors
        .iter()
        .filter_map(|&a| {
            let ab = &nodes[a].bounds;
            hits.iter()
                .copied()
                .filter(|&h| h != a)
                .filter(|&h| {
                    let hb = &nodes[h].bounds;
                    hb.x1 < ab.x2 && ab.x1 < hb.x2
                })
                .filter_map(|h| distance(ab, &nodes[h].bounds).map(|d| (d, h)))
                .min()
                .map(|(_, h)| h)
        })
        .collect();
    chosen.sort_unstable();
    chosen.dedup();
    chosen
}

/// `covered[j]` is true when `j` is a strict descendant of one of `ancestors` (sorted ascending).
fn covered_by(tree: &UiTree, ancestors: &[usize]) -> Vec<bool> {
    let nodes = tree.nodes();
    let mut covered = vec![false; nodes.len()];
    let mut next = ancestors.iter().peekable();
    let mut cover_end = 0usize;
    for (j, slot) in covered.iter_mut().enumerate() {
        while let Some(&&a) = next.peek() {
            if a >= j {
                break;
            }
            cover_end = cover_end.max(nodes[a].subtree_end);
            next.next();
        }
        *slot = j < cover_end;
    }
    covered
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        let strings = [
            ("resource_id", &self.resource_id),
            ("text", &self.text),
            ("text_contains", &self.text_contains),
            ("content_desc", &self.content_desc),
            ("content_desc_contains", &self.content_desc_contains),
            ("class", &self.class),
            ("package", &self.package),
        ];
        for (name, value) in strings {
            if let Some(v) = value {
                parts.push(format!("{name}={v:?}"));
            }
        }
        let flags = [
            ("clickable", self.clickable),
            ("enabled", self.enabled),
            ("selected", self.selected),
            ("checked", self.checked),
            ("checkable", self.checkable),
            ("focused", self.focused),
            ("scrollable", self.scrollable),
        ];
        for (name, value) in flags {
            if let Some(v) = value {
                parts.push(format!("{name}={v}"));
            }
        }
        if let Some(p) = &self.child_of {
            parts.push(format!("child_of({p})"));
        }
        if let Some(a) = &self.descendant_of {
            parts.push(format!("descendant_of({a})"));
        }
        if let Some(c) = &self.has_child {
            parts.push(format!("has_child({c})"));
        }
        if let Some(b) = &self.below {
            parts.push(format!("below({b})"));
        }
        if let Some(a) = &self.above {
            parts.push(format!("above({a})"));
        }
        if let Some(n) = self.nth {
            parts.push(format!("nth={n}"));
        }
        write!(f, "{{{}}}", parts.join(", "))
    }
}

/// Which alternative found which node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match {
    /// Arena index of the node in the tree.
    pub node: usize,
    /// Index of the alternative that matched (0 = the preferred one).
    pub fallback: usize,
}

/// Ordered alternatives for one named view.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Fallbacks(pub Vec<Selector>);

impl Fallbacks {
    pub fn new(alternatives: Vec<Selector>) -> Self {
        Self(alternatives)
    }

    pub fn alternatives(&self) -> &[Selector] {
        &self.0
    }

    /// Non-empty, and every alternative valid; the message names the failing alternative.
    pub fn validate(&self) -> Result<(), String> {
        if self.0.is_empty() {
            return Err("empty fallback list".into());
        }
        for (i, sel) in self.0.iter().enumerate() {
            sel.validate()
                .map_err(|e| format!("alternative {i}: {e}"))?;
        }
        Ok(())
    }

    /// Tries each alternative in order; the first that finds a node wins.
    pub fn find(&self, tree: &UiTree) -> Option<Match> {
        self.0
            .iter()
            .enumerate()
            .find_map(|(fallback, sel)| sel.find(tree).map(|node| Match { node, fallback }))
    }

    /// All nodes of the first alternative that finds any (e.g. every result tile).
    pub fn find_all(&self, tree: &UiTree) -> Vec<usize> {
        self.0
            .iter()
            .map(|s| s.find_all(tree))
            .find(|v| !v.is_empty())
            .unwrap_or_default()
    }
}

impl fmt::Display for Fallbacks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        write!(f, "[{}]", parts.join(" | "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dump::parse_dump;

    fn tree() -> UiTree {
        parse_dump(
            r#"<hierarchy>
<node class="F" resource-id="app:id/root" bounds="[0,0][100,100]">
  <node class="L" resource-id="app:id/list" scrollable="true" bounds="[0,0][100,80]">
    <node class="T" text="one" clickable="true" bounds="[0,0][100,10]"/>
    <node class="G" bounds="[0,10][100,20]">
      <node class="T" text="two words" bounds="[0,10][50,20]"/>
    </node>
    <node class="T" text="three" content-desc="Like" clickable="true" bounds="[0,20][100,30]"/>
  </node>
  <node class="T" text="outside" clickable="true" bounds="[0,80][100,100]"/>
</node>
</hierarchy>"#,
        )
        .unwrap()
    }

    fn sel(toml_src: &str) -> Selector {
        toml::from_str(toml_src).unwrap()
    }

    #[test]
    fn attribute_predicates() {
        let t = tree();
        assert_eq!(Selector::resource_id("app:id/list").find(&t), Some(1));
        assert_eq!(Selector::text("two words").find(&t), Some(4));
        assert_eq!(sel("text_contains = \"words\"").find(&t), Some(4));
        assert_eq!(Selector::content_desc("Like").find(&t), Some(5));
        assert_eq!(
            sel("class = \"T\"\nclickable = true").find_all(&t),
            vec![2, 5, 6]
        );
        assert_eq!(
            sel("class = \"T\"\nclickable = false").find_all(&t),
            vec![4]
        );
        assert_eq!(Selector::text("absent").find(&t), None);
    }

    #[test]
    fn structure_and_nth() {
        let t = tree();
        let child = sel("class = \"T\"\nchild_of = { resource_id = \"app:id/list\" }");
        assert_eq!(child.find_all(&t), vec![2, 5]);
        let desc = sel("class = \"T\"\ndescendant_of = { resource_id = \"app:id/list\" }");
        assert_eq!(desc.find_all(&t), vec![2, 4, 5]);
        let nth = sel("class = \"T\"\ndescendant_of = { resource_id = \"app:id/list\" }\nnth = 2");
        assert_eq!(nth.find(&t), Some(5));
        let too_far = sel("class = \"T\"\nnth = 9");
        assert_eq!(too_far.find(&t), None);
        // Nested structure: a T inside a G inside the list.
        let nested = sel(
            "class = \"T\"\nchild_of = { class = \"G\", child_of = { resource_id = \"app:id/list\" } }",
        );
        assert_eq!(nested.find_all(&t), vec![4]);
        let holder = sel("class = \"G\"\nhas_child = { text = \"two words\" }");
        assert_eq!(holder.find_all(&t), vec![3]);
        let none = sel("class = \"F\"\nhas_child = { text = \"two words\" }");
        assert_eq!(none.find(&t), None, "a grandchild is not a child");
    }

    #[test]
    fn below_and_above_take_the_nearest_neighbour_of_each_anchor() {
        let t = parse_dump(
            r#"<hierarchy><node class="F" bounds="[0,0][1000,1000]">
  <node class="T" text="Name" bounds="[0,100][500,150]"/>
  <node class="E" text="Sim User" bounds="[0,150][1000,250]"/>
  <node class="T" text="Username" bounds="[0,300][500,350]"/>
  <node class="E" text="sim.user" bounds="[0,350][1000,450]"/>
  <node class="E" text="far right" bounds="[600,500][1000,600]"/>
  <node class="T" text="Bio" bounds="[0,700][500,750]"/>
  <node class="E" text="" bounds="[0,750][1000,900]"/>
</node></hierarchy>"#,
        )
        .unwrap();
        let under = |label: &str| {
            sel(&format!("class = \"E\"\nbelow = {{ text = \"{label}\" }}")).find_all(&t)
        };
        assert_eq!(under("Name"), vec![2]);
        assert_eq!(
            under("Username"),
            vec![4],
            "the nearest, not every field below"
        );
        assert_eq!(under("Bio"), vec![7]);
        assert_eq!(under("absent"), Vec::<usize>::new());
        let over = sel("class = \"T\"\nabove = { text = \"sim.user\" }");
        assert_eq!(over.find(&t), Some(3));
        // Horizontal overlap is required: nothing of class T lies over "far right".
        let none = sel("class = \"T\"\nabove = { text = \"far right\" }");
        assert_eq!(none.find(&t), None);
        assert!(over.to_string().contains("above("), "{over}");
        assert!(sel("below = { text = \"x\" }").validate().is_err());
    }

    #[test]
    fn fallbacks_take_the_first_alternative_that_matches() {
        let t = tree();
        let f: Fallbacks = toml::from_str::<std::collections::BTreeMap<String, Fallbacks>>(
            "x = [{ resource_id = \"app:id/gone\" }, { content_desc = \"Like\" }, { text = \"one\" }]",
        )
        .unwrap()
        .remove("x")
        .unwrap();
        assert_eq!(
            f.find(&t),
            Some(Match {
                node: 5,
                fallback: 1
            })
        );
        assert_eq!(f.find_all(&t), vec![5]);
        assert!(f.to_string().contains("content_desc=\"Like\""));
    }

    #[test]
    fn validation() {
        assert!(Selector::default().validate().is_err());
        assert!(sel("nth = 1").validate().is_err());
        assert!(sel("resource_id = \"\"").validate().is_err());
        assert!(
            sel("text = \"\"").validate().is_ok(),
            "matching an empty text is legitimate"
        );
        assert!(
            sel("class = \"T\"\nchild_of = { nth = 0 }")
                .validate()
                .is_err()
        );
        assert!(
            Fallbacks::default()
                .validate()
                .unwrap_err()
                .contains("empty")
        );
        assert!(
            toml::from_str::<Selector>("resourceid = \"x\"").is_err(),
            "unknown key"
        );
    }
}

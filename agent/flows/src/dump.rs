//! `uiautomator dump` XML to a node tree.
//!
//! A dump is `<hierarchy rotation="0">` holding nested `<node …/>` elements, one per view, with
//! Android's attributes (`text`, `resource-id`, `class`, `package`, `content-desc`, the boolean
//! flags and `bounds="[x1,y1][x2,y2]"`). [`parse_dump`] turns it into a [`UiTree`]: a flat arena
//! of [`Node`]s in document order (pre-order), each knowing its parent and the end of its
//! subtree, so "is a descendant of" is one comparison and matching needs no recursion.
//!
//! Any input is either a tree or a typed [`DumpError`] (truncated, malformed, not a hierarchy,
//! bad bounds, bad flags, absurdly deep or large); the parser never panics.

use quick_xml::XmlVersion;
use quick_xml::errors::SyntaxError;
use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader;

/// Most nested nodes accepted; real dumps stay far below (tens of levels).
pub const MAX_DEPTH: usize = 1024;
/// Most nodes accepted in one dump; real screens have hundreds.
pub const MAX_NODES: usize = 100_000;

/// Why a dump could not be turned into a tree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DumpError {
    /// The command output holds no XML at all (e.g. `ERROR: null root node returned by
    /// UiTestAutomationBridge.` when the screen is off).
    #[error("no ui dump in output: {0:?}")]
    NoDump(String),
    #[error("dump is not valid utf-8 (at byte {0})")]
    InvalidUtf8(usize),
    #[error("malformed dump xml at byte {position}: {message}")]
    Malformed { position: u64, message: String },
    /// The input ended inside the hierarchy or inside a tag (a cut-off transfer or a partial
    /// file); `open` counts the elements left open (0 if cut before the root opened).
    #[error("dump truncated: {open} element(s) still open at end of input")]
    Truncated { open: usize },
    /// The document's root element is not `<hierarchy>`.
    #[error("dump is not a view hierarchy: root is {found}")]
    NotAHierarchy { found: String },
    #[error("unexpected element <{name}> inside the hierarchy at byte {position}")]
    UnexpectedElement { name: String, position: u64 },
    #[error("node {node} has no bounds")]
    MissingBounds { node: usize },
    #[error("node {node} has bad bounds {value:?}")]
    BadBounds { node: usize, value: String },
    #[error("node {node} has a bad value for {name}: {value:?}")]
    BadAttribute {
        node: usize,
        name: String,
        value: String,
    },
    #[error("dump nests nodes deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("dump has more than {MAX_NODES} nodes")]
    TooManyNodes,
}

/// A node's rectangle on screen: left/top inclusive, right/bottom exclusive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Bounds {
    pub x1: i32,
    pub y1: i32,
    pub x2: i32,
    pub y2: i32,
}

impl Bounds {
    /// Parses Android's `[x1,y1][x2,y2]`; None unless well-formed with `x1 <= x2`, `y1 <= y2`.
    pub fn parse(s: &str) -> Option<Self> {
        fn pair(s: &str) -> Option<(i32, i32, &str)> {
            let s = s.strip_prefix('[')?;
            let (inner, rest) = s.split_once(']')?;
            let (a, b) = inner.split_once(',')?;
            Some((int(a)?, int(b)?, rest))
        }
        fn int(s: &str) -> Option<i32> {
            // Only an optional minus and digits: no spaces, no plus sign.
            let digits = s.strip_prefix('-').unwrap_or(s);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            s.parse().ok()
        }
        let (x1, y1, rest) = pair(s)?;
        let (x2, y2, rest) = pair(rest)?;
        (rest.is_empty() && x1 <= x2 && y1 <= y2).then_some(Self { x1, y1, x2, y2 })
    }

    pub fn width(&self) -> i32 {
        self.x2.saturating_sub(self.x1)
    }

    pub fn height(&self) -> i32 {
        self.y2.saturating_sub(self.y1)
    }

    /// The point a tap on this node goes to.
    pub fn center(&self) -> (i32, i32) {
        let mid = |a: i32, b: i32| ((i64::from(a) + i64::from(b)) / 2) as i32;
        (mid(self.x1, self.x2), mid(self.y1, self.y2))
    }

    pub fn is_empty(&self) -> bool {
        self.width() == 0 || self.height() == 0
    }

    pub fn contains(&self, x: i32, y: i32) -> bool {
        x >= self.x1 && x < self.x2 && y >= self.y1 && y < self.y2
    }
}

impl std::fmt::Display for Bounds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{},{}][{},{}]", self.x1, self.y1, self.x2, self.y2)
    }
}

/// One view in the dump. String attributes that are absent are empty; flags that are absent are
/// false (except `enabled`, which Android always writes, and which defaults to true).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The `index` attribute: position among its siblings.
    pub index: u32,
    pub text: String,
    pub resource_id: String,
    pub class: String,
    pub package: String,
    pub content_desc: String,
    pub checkable: bool,
    pub checked: bool,
    pub clickable: bool,
    pub enabled: bool,
    pub focusable: bool,
    pub focused: bool,
    pub scrollable: bool,
    pub long_clickable: bool,
    pub password: bool,
    pub selected: bool,
    pub bounds: Bounds,
    /// Arena index of the parent node; None for top-level nodes.
    pub parent: Option<usize>,
    /// 0 for top-level nodes.
    pub depth: usize,
    /// One past the arena index of this node's last descendant.
    pub subtree_end: usize,
}

impl Node {
    fn empty(parent: Option<usize>, depth: usize, at: usize) -> Self {
        Self {
            index: 0,
            text: String::new(),
            resource_id: String::new(),
            class: String::new(),
            package: String::new(),
            content_desc: String::new(),
            checkable: false,
            checked: false,
            clickable: false,
            enabled: true,
            focusable: false,
            focused: false,
            scrollable: false,
            long_clickable: false,
            password: false,
            selected: false,
            bounds: Bounds::default(),
            parent,
            depth,
            subtree_end: at + 1,
        }
    }

    /// A short human description for logs and errors.
    pub fn describe(&self) -> String {
        let mut s = self.class.rsplit('.').next().unwrap_or("").to_string();
        if !self.resource_id.is_empty() {
            s.push_str(&format!(" id={}", self.resource_id));
        }
        if !self.text.is_empty() {
            s.push_str(&format!(" text={:?}", self.text));
        }
        if !self.content_desc.is_empty() {
            s.push_str(&format!(" desc={:?}", self.content_desc));
        }
        s.push_str(&format!(" {}", self.bounds));
        s
    }
}

/// A parsed screen: every node in document order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UiTree {
    nodes: Vec<Node>,
    rotation: i32,
}

impl UiTree {
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn get(&self, id: usize) -> Option<&Node> {
        self.nodes.get(id)
    }

    /// The `rotation` attribute of the hierarchy (0 when absent).
    pub fn rotation(&self) -> i32 {
        self.rotation
    }

    /// The package of the first node (the foreground window's app), if any.
    pub fn foreground_package(&self) -> Option<&str> {
        self.nodes.first().map(|n| n.package.as_str())
    }

    /// True if `id` lies strictly inside `ancestor`'s subtree.
    pub fn is_descendant(&self, id: usize, ancestor: usize) -> bool {
        self.nodes
            .get(ancestor)
            .is_some_and(|a| id > ancestor && id < a.subtree_end)
    }

    /// Direct children of `id`, in document order.
    pub fn children(&self, id: usize) -> impl Iterator<Item = usize> + '_ {
        let end = self.nodes.get(id).map_or(id, |n| n.subtree_end);
        let mut next = id + 1;
        std::iter::from_fn(move || {
            if next >= end {
                return None;
            }
            let cur = next;
            next = self.nodes.get(cur).map_or(end, |n| n.subtree_end);
            Some(cur)
        })
    }
}

/// Takes the stdout of `uiautomator dump F && cat F` and returns the XML part, skipping the
/// `UI hierchary dumped to: F` line (Android's own spelling) and anything else before the XML.
pub fn extract_dump_xml(stdout: &[u8]) -> Result<&[u8], DumpError> {
    let find = |needle: &[u8]| stdout.windows(needle.len()).position(|w| w == needle);
    match [find(b"<?xml"), find(b"<hierarchy")]
        .into_iter()
        .flatten()
        .min()
    {
        Some(start) => Ok(&stdout[start..]),
        None => {
            let text = String::from_utf8_lossy(stdout);
            Err(DumpError::NoDump(text.trim().chars().take(200).collect()))
        }
    }
}

/// Parses dump bytes (UTF-8) into a tree.
pub fn parse_dump_bytes(xml: &[u8]) -> Result<UiTree, DumpError> {
    let text = std::str::from_utf8(xml).map_err(|e| DumpError::InvalidUtf8(e.valid_up_to()))?;
    parse_dump(text)
}

/// Parses a `uiautomator dump` document into a tree.
pub fn parse_dump(xml: &str) -> Result<UiTree, DumpError> {
    let mut reader = Reader::from_str(xml);
    reader.config_mut().check_end_names = true;
    let mut tree = UiTree::default();
    // Open `<node>` elements, innermost last; `in_root` once `<hierarchy>` has opened.
    let mut stack: Vec<usize> = Vec::new();
    let mut in_root = false;
    loop {
        let position = reader.buffer_position();
        let event = match reader.read_event() {
            Ok(event) => event,
            // Input that ends inside a tag, comment or declaration was cut off.
            Err(quick_xml::Error::Syntax(e)) if !matches!(e, SyntaxError::InvalidBangMarkup) => {
                let open = if in_root { stack.len() + 1 } else { 0 };
                return Err(DumpError::Truncated { open });
            }
            Err(e) => {
                return Err(DumpError::Malformed {
                    position: reader.error_position(),
                    message: e.to_string(),
                });
            }
        };
        match event {
            Event::Start(ref e) | Event::Empty(ref e) if !in_root => {
                let name = e.name();
                if name.as_ref() != "hierarchy" {
                    return Err(DumpError::NotAHierarchy {
                        found: format!("<{}>", name.as_ref()),
                    });
                }
                tree.rotation = hierarchy_rotation(e);
                if matches!(event, Event::Empty(_)) {
                    return Ok(tree);
                }
                in_root = true;
            }
            Event::Start(e) => {
                let id = push_node(&mut tree, &stack, &e, position)?;
                stack.push(id);
            }
            Event::Empty(e) => {
                push_node(&mut tree, &stack, &e, position)?;
            }
            Event::End(e) => {
                if e.name().as_ref() == "hierarchy" {
                    // End names are checked, so every node is closed here.
                    return Ok(tree);
                }
                if let Some(id) = stack.pop() {
                    let end = tree.nodes.len();
                    if let Some(node) = tree.nodes.get_mut(id) {
                        node.subtree_end = end;
                    }
                }
            }
            Event::Eof => {
                return Err(if in_root {
                    DumpError::Truncated {
                        open: stack.len() + 1,
                    }
                } else {
                    DumpError::NotAHierarchy {
                        found: "end of input".into(),
                    }
                });
            }
            // Declarations, whitespace, comments and stray text carry no views.
            _ => {}
        }
    }
}

fn hierarchy_rotation(e: &BytesStart<'_>) -> i32 {
    e.attributes()
        .flatten()
        .find(|a| a.key.as_ref() == "rotation")
        .and_then(|a| a.value.trim().parse().ok())
        .unwrap_or(0)
}

fn push_node(
    tree: &mut UiTree,
    stack: &[usize],
    e: &BytesStart<'_>,
    position: u64,
) -> Result<usize, DumpError> {
    let name = e.name();
    if name.as_ref() != "node" {
        return Err(DumpError::UnexpectedElement {
            name: name.as_ref().to_string(),
            position,
        });
    }
    if stack.len() >= MAX_DEPTH {
        return Err(DumpError::TooDeep);
    }
    if tree.nodes.len() >= MAX_NODES {
        return Err(DumpError::TooManyNodes);
    }
    let id = tree.nodes.len();
    let mut node = Node::empty(stack.last().copied(), stack.len(), id);
    let mut bounds = None;
    for attr in e.attributes() {
        let attr = attr.map_err(|err| DumpError::Malformed {
            position,
            message: err.to_string(),
        })?;
        let value = attr
            .normalized_value(XmlVersion::Implicit1_0)
            .map_err(|err| DumpError::Malformed {
                position,
                message: err.to_string(),
            })?;
        let key = attr.key.as_ref();
        let flag = |value: &str| match value {
            "true" => Ok(true),
            "false" => Ok(false),
            other => Err(DumpError::BadAttribute {
                node: id,
                name: key.to_string(),
                value: other.to_string(),
            }),
        };
        match key {
            "index" => {
                node.index = value.parse().map_err(|_| DumpError::BadAttribute {
                    node: id,
                    name: key.to_string(),
                    value: value.to_string(),
                })?;
            }
            "text" => node.text = value.into_owned(),
            "resource-id" => node.resource_id = value.into_owned(),
            "class" => node.class = value.into_owned(),
            "package" => node.package = value.into_owned(),
            "content-desc" => node.content_desc = value.into_owned(),
            "checkable" => node.checkable = flag(&value)?,
            "checked" => node.checked = flag(&value)?,
            "clickable" => node.clickable = flag(&value)?,
            "enabled" => node.enabled = flag(&value)?,
            "focusable" => node.focusable = flag(&value)?,
            "focused" => node.focused = flag(&value)?,
            "scrollable" => node.scrollable = flag(&value)?,
            "long-clickable" => node.long_clickable = flag(&value)?,
            "password" => node.password = flag(&value)?,
            "selected" => node.selected = flag(&value)?,
            "bounds" => {
                bounds = Some(Bounds::parse(&value).ok_or_else(|| DumpError::BadBounds {
                    node: id,
                    value: value.to_string(),
                })?);
            }
            // Newer Android versions add attributes (hint, drawing-order, display-id, …).
            _ => {}
        }
    }
    node.bounds = bounds.ok_or(DumpError::MissingBounds { node: id })?;
    tree.nodes.push(node);
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: &str = r#"<?xml version='1.0' encoding='UTF-8' standalone='yes' ?><hierarchy rotation="1"><node index="0" text="" resource-id="" class="android.widget.FrameLayout" package="com.x" content-desc="" checkable="false" checked="false" clickable="false" enabled="true" focusable="false" focused="false" scrollable="false" long-clickable="false" password="false" selected="false" bounds="[0,0][1080,2400]"><node index="0" text="Tom &amp; Jerry &lt;3&#10;line2" resource-id="com.x:id/a" class="android.widget.TextView" package="com.x" content-desc="say &quot;hi&quot;" checkable="false" checked="false" clickable="true" enabled="false" focusable="false" focused="false" scrollable="false" long-clickable="false" password="false" selected="true" bounds="[10,20][110,220]" /><node index="1" text="b" class="android.widget.LinearLayout" bounds="[0,300][1080,400]"><node index="0" text="c" bounds="[0,300][10,310]"/></node></node></hierarchy>"#;

    #[test]
    fn parses_attributes_structure_and_entities() {
        let tree = parse_dump(SMALL).unwrap();
        assert_eq!(tree.len(), 4);
        assert_eq!(tree.rotation(), 1);
        let a = &tree.nodes()[1];
        assert_eq!(a.text, "Tom & Jerry <3\nline2");
        assert_eq!(a.content_desc, "say \"hi\"");
        assert_eq!(a.resource_id, "com.x:id/a");
        assert!(a.clickable && a.selected && !a.enabled && !a.focused);
        assert_eq!(
            a.bounds,
            Bounds {
                x1: 10,
                y1: 20,
                x2: 110,
                y2: 220
            }
        );
        assert_eq!(a.bounds.center(), (60, 120));
        assert_eq!(a.parent, Some(0));
        assert_eq!(tree.nodes()[3].parent, Some(2));
        assert_eq!(tree.nodes()[3].depth, 2);
        assert!(tree.is_descendant(3, 0));
        assert!(tree.is_descendant(3, 2));
        assert!(!tree.is_descendant(3, 1));
        assert!(!tree.is_descendant(0, 0));
        assert_eq!(tree.children(0).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(tree.children(2).collect::<Vec<_>>(), vec![3]);
        assert_eq!(tree.foreground_package(), Some("com.x"));
        // Absent flags default: enabled true, the rest false.
        assert!(tree.nodes()[3].enabled && !tree.nodes()[3].clickable);
    }

    #[test]
    fn extracts_xml_after_the_dumped_to_line() {
        let out = format!("UI hierchary dumped to: /sdcard/window_dump.xml\n{SMALL}");
        let xml = extract_dump_xml(out.as_bytes()).unwrap();
        assert!(xml.starts_with(b"<?xml"));
        assert_eq!(parse_dump_bytes(xml).unwrap().len(), 4);
        let err = extract_dump_xml(b"ERROR: null root node returned by UiTestAutomationBridge.\n")
            .unwrap_err();
        assert!(
            matches!(err, DumpError::NoDump(ref m) if m.contains("null root node")),
            "{err}"
        );
    }

    #[test]
    fn empty_hierarchy_is_an_empty_tree() {
        assert!(
            parse_dump("<hierarchy rotation=\"0\"/>")
                .unwrap()
                .is_empty()
        );
        assert!(
            parse_dump("<hierarchy rotation=\"0\"></hierarchy>")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn truncation_is_a_typed_error() {
        let cut = &SMALL[..SMALL.len() - "</node></hierarchy>".len()];
        assert_eq!(parse_dump(cut), Err(DumpError::Truncated { open: 2 }));
        let cut = &SMALL[..SMALL.len() - 5];
        assert_eq!(parse_dump(cut), Err(DumpError::Truncated { open: 1 }));
        let cut = &SMALL[..SMALL.find("bounds=\"[10").unwrap()];
        assert_eq!(parse_dump(cut), Err(DumpError::Truncated { open: 2 }));
        assert!(matches!(
            parse_dump("<hierarchy><node bounds=\"[0,0][1,1]\"></nod></hierarchy>"),
            Err(DumpError::Malformed { .. })
        ));
    }

    #[test]
    fn not_a_hierarchy() {
        assert_eq!(
            parse_dump("<html><body/></html>"),
            Err(DumpError::NotAHierarchy {
                found: "<html>".into()
            })
        );
        assert_eq!(
            parse_dump(""),
            Err(DumpError::NotAHierarchy {
                found: "end of input".into()
            })
        );
        assert!(matches!(
            parse_dump("<hierarchy><div bounds=\"[0,0][1,1]\"/></hierarchy>"),
            Err(DumpError::UnexpectedElement { ref name, .. }) if name == "div"
        ));
    }

    #[test]
    fn bad_bounds_and_flags() {
        for bad in [
            "[0,0][1,]",
            "[0,0]",
            "[5,0][1,1]",
            "[0,0][1,1]x",
            "[ 0,0][1,1]",
            "",
            "[+1,0][2,2]",
        ] {
            let xml = format!("<hierarchy><node bounds=\"{bad}\"/></hierarchy>");
            assert_eq!(
                parse_dump(&xml),
                Err(DumpError::BadBounds {
                    node: 0,
                    value: bad.into()
                }),
                "{bad}"
            );
        }
        assert_eq!(
            parse_dump("<hierarchy><node text=\"x\"/></hierarchy>"),
            Err(DumpError::MissingBounds { node: 0 })
        );
        assert!(matches!(
            parse_dump("<hierarchy><node clickable=\"yes\" bounds=\"[0,0][1,1]\"/></hierarchy>"),
            Err(DumpError::BadAttribute { ref name, .. }) if name == "clickable"
        ));
        assert_eq!(
            Bounds::parse("[-5,-6][7,8]"),
            Some(Bounds {
                x1: -5,
                y1: -6,
                x2: 7,
                y2: 8
            })
        );
    }

    #[test]
    fn depth_limit() {
        let open = "<node bounds=\"[0,0][1,1]\">".repeat(MAX_DEPTH + 1);
        let close = "</node>".repeat(MAX_DEPTH + 1);
        let xml = format!("<hierarchy>{open}{close}</hierarchy>");
        assert_eq!(parse_dump(&xml), Err(DumpError::TooDeep));
    }

    #[test]
    fn invalid_utf8() {
        assert_eq!(
            parse_dump_bytes(b"<hierarchy>\xff"),
            Err(DumpError::InvalidUtf8(11))
        );
    }
}

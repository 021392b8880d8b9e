//! Crate tests: they drive the phone through `Phone::shell` only, as the agent would, and read
//! the screen back by parsing the uiautomator XML with quick-xml.

mod faults;
mod fs_sync;
mod journeys;
mod props;
mod shell_cmds;
mod xml;

use std::collections::BTreeMap;

use quick_xml::Reader;
use quick_xml::XmlVersion;
use quick_xml::events::Event;

use crate::{Phone, PhoneConfig, Rect, UiVariant, app_resource_id};

/// The attributes every uiautomator node carries, in Android's order.
pub(crate) const NODE_ATTRS: [&str; 17] = [
    "index",
    "text",
    "resource-id",
    "class",
    "package",
    "content-desc",
    "checkable",
    "checked",
    "clickable",
    "enabled",
    "focusable",
    "focused",
    "scrollable",
    "long-clickable",
    "password",
    "selected",
    "bounds",
];

#[derive(Debug, Clone)]
pub(crate) struct XNode {
    pub attrs: BTreeMap<String, String>,
    pub depth: usize,
}

impl XNode {
    pub(crate) fn get(&self, key: &str) -> &str {
        self.attrs.get(key).map_or("", String::as_str)
    }

    pub(crate) fn bounds(&self) -> Rect {
        let nums: Vec<i32> = self
            .get("bounds")
            .split(|c: char| !c.is_ascii_digit() && c != '-')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().expect("bounds number"))
            .collect();
        assert_eq!(nums.len(), 4, "bounds {:?}", self.get("bounds"));
        Rect::new(nums[0], nums[1], nums[2], nums[3])
    }

    pub(crate) fn flag(&self, key: &str) -> bool {
        match self.get(key) {
            "true" => true,
            "false" => false,
            other => panic!("{key}={other:?} is not a boolean"),
        }
    }
}

/// Parses a dump strictly: declaration, one `hierarchy` root, only `node` elements below it,
/// every node with exactly the 17 attributes in order, matched nesting, nothing after the end.
pub(crate) fn parse_xml(xml: &str) -> Vec<XNode> {
    assert!(
        xml.starts_with(
            "<?xml version='1.0' encoding='UTF-8' standalone='yes' ?><hierarchy rotation=\"0\">"
        ),
        "prefix: {}",
        &xml[..xml.len().min(120)]
    );
    let mut reader = Reader::from_str(xml);
    reader.config_mut().check_end_names = true;
    let mut nodes = Vec::new();
    let mut depth = 0usize;
    let mut roots = 0;
    loop {
        let ev = reader
            .read_event()
            .unwrap_or_else(|e| panic!("malformed XML: {e}"));
        match ev {
            Event::Decl(_) => {}
            Event::Start(e) if e.name().as_ref() == "hierarchy" => {
                roots += 1;
                assert_eq!(depth, 0, "hierarchy must be the root");
                depth += 1;
            }
            Event::Start(e) => {
                assert!(depth >= 1, "node outside hierarchy");
                nodes.push(XNode {
                    attrs: node_attrs(&e),
                    depth,
                });
                depth += 1;
            }
            Event::Empty(e) => {
                assert!(depth >= 1, "node outside hierarchy");
                nodes.push(XNode {
                    attrs: node_attrs(&e),
                    depth,
                });
            }
            Event::End(_) => {
                depth = depth.checked_sub(1).expect("unbalanced end");
            }
            Event::Text(t) => assert!(t.as_ref().chars().all(char::is_whitespace), "stray text"),
            Event::Eof => break,
            other => panic!("unexpected XML event {other:?}"),
        }
    }
    assert_eq!(depth, 0, "unclosed elements");
    assert_eq!(roots, 1, "one hierarchy");
    assert!(xml.ends_with("</hierarchy>"));
    nodes
}

fn node_attrs(e: &quick_xml::events::BytesStart<'_>) -> BTreeMap<String, String> {
    assert_eq!(e.name().as_ref(), "node", "only node elements");
    let mut attrs = BTreeMap::new();
    let mut keys = Vec::new();
    for a in e.attributes() {
        let a = a.expect("attribute");
        let key = a.key.as_ref().to_string();
        let value = a
            .normalized_value(XmlVersion::Explicit1_0)
            .expect("value")
            .into_owned();
        keys.push(key.clone());
        attrs.insert(key, value);
    }
    assert_eq!(keys, NODE_ATTRS, "attribute set and order");
    attrs
}

pub(crate) fn sh(phone: &mut Phone, cmd: &str) -> String {
    let o = phone.shell(cmd);
    assert_eq!(
        o.exit,
        0,
        "`{cmd}` failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).expect("utf8 stdout")
}

/// `uiautomator dump /dev/tty`, parsed.
pub(crate) fn dump(phone: &mut Phone) -> Vec<XNode> {
    let s = sh(phone, "uiautomator dump /dev/tty");
    let xml = s
        .strip_suffix("UI hierchary dumped to: /dev/tty\n")
        .expect("dump trailer");
    parse_xml(xml)
}

pub(crate) fn rid(phone: &Phone, a_name: &str) -> String {
    app_resource_id(a_name, phone.config().variant)
}

pub(crate) fn find<'a>(nodes: &'a [XNode], phone: &Phone, a_name: &str) -> Option<&'a XNode> {
    let id = rid(phone, a_name);
    nodes.iter().find(|n| n.get("resource-id") == id)
}

pub(crate) fn find_all<'a>(nodes: &'a [XNode], phone: &Phone, a_name: &str) -> Vec<&'a XNode> {
    let id = rid(phone, a_name);
    nodes
        .iter()
        .filter(|n| n.get("resource-id") == id)
        .collect()
}

/// Dumps, finds the node by its variant-A id name, and taps its centre.
pub(crate) fn tap_id(phone: &mut Phone, a_name: &str) {
    let nodes = dump(phone);
    let node = find(&nodes, phone, a_name)
        .unwrap_or_else(|| panic!("no node {a_name} on {:?}", phone.screen()));
    let (x, y) = node.bounds().center();
    sh(phone, &format!("input tap {x} {y}"));
}

/// Dumps, finds the first node whose text or content-desc is `label`, and taps it.
pub(crate) fn tap_label(phone: &mut Phone, label: &str) {
    let nodes = dump(phone);
    let node = nodes
        .iter()
        .find(|n| n.get("text") == label || n.get("content-desc") == label)
        .unwrap_or_else(|| panic!("no node labelled {label:?} on {:?}", phone.screen()));
    let (x, y) = node.bounds().center();
    sh(phone, &format!("input tap {x} {y}"));
}

pub(crate) fn phone(variant: UiVariant) -> Phone {
    Phone::with_config(
        crate::Identity::default(),
        PhoneConfig {
            variant,
            ..PhoneConfig::default()
        },
    )
}

pub(crate) fn launched(variant: UiVariant) -> Phone {
    let mut p = phone(variant);
    sh(
        &mut p,
        "monkey -p com.zhiliaoapp.musically -c android.intent.category.LAUNCHER 1",
    );
    p
}

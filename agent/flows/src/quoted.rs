//! Views named in failure messages as `name="value"` pairs, the form a [`crate::Selector`]
//! prints in: [`describe_node`] writes a view so, and the console reads the pairs back
//! ([`quoted_pairs`]) to highlight the views they match ([`pairs_match`]) in the evidence's
//! UI dump. Writer and reader live here so they cannot drift apart.

use crate::dump::Node;

/// The attribute names a quoted pair may carry (a selector's string predicates).
const NAMES: [&str; 7] = [
    "resource_id",
    "text",
    "text_contains",
    "content_desc",
    "content_desc_contains",
    "class",
    "package",
];

/// A view as pairs from its own attributes (resource id, content-desc, text, class): every
/// pair matches it. A value with a `"` in it is left out.
pub fn describe_node(n: &Node) -> String {
    [
        ("resource_id", &n.resource_id),
        ("content_desc", &n.content_desc),
        ("text", &n.text),
        ("class", &n.class),
    ]
    .iter()
    .filter(|(_, v)| !v.is_empty() && !v.contains('"'))
    .map(|(k, v)| format!("{k}=\"{v}\""))
    .collect::<Vec<_>>()
    .join(" ")
}

/// The `name="value"` pairs quoted in `message`, in order, for the names a selector has.
pub fn quoted_pairs(message: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = message;
    while let Some(eq) = rest.find("=\"") {
        let name_start = rest[..eq]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(0, |i| i + 1);
        let name = &rest[name_start..eq];
        let after = &rest[eq + 2..];
        let Some(end) = after.find('"') else { break };
        if NAMES.contains(&name) {
            out.push((name.to_string(), after[..end].to_string()));
        }
        rest = &after[end + 1..];
    }
    out
}

/// Whether `n` matches every pair (and there is at least one).
pub fn pairs_match(n: &Node, pairs: &[(String, String)]) -> bool {
    !pairs.is_empty()
        && pairs.iter().all(|(k, v)| match k.as_str() {
            "resource_id" => n.resource_id == *v,
            "text" => n.text == *v,
            "text_contains" => n.text.contains(v.as_str()),
            "content_desc" => n.content_desc == *v,
            "content_desc_contains" => n.content_desc.contains(v.as_str()),
            "class" => n.class == *v,
            "package" => n.package == *v,
            _ => false,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_dump;

    #[test]
    fn selectors_are_read_from_messages() {
        let p = quoted_pairs(
            r#"no resource_id="com.app:id/like" text_contains="Like" clickable on screen"#,
        );
        assert_eq!(
            p,
            vec![
                ("resource_id".into(), "com.app:id/like".into()),
                ("text_contains".into(), "Like".into())
            ]
        );
        assert!(quoted_pairs("no selector here").is_empty());
    }

    #[test]
    fn a_described_view_is_read_back_and_matches_only_itself() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?><hierarchy rotation="0">
<node index="0" text="" resource-id="" class="android.widget.FrameLayout" package="p" content-desc="" checkable="false" checked="false" clickable="false" enabled="true" focusable="false" focused="false" scrollable="false" long-clickable="false" password="false" selected="false" bounds="[0,0][100,100]">
<node index="0" text="Profile" resource-id="p:id/tab_profile" class="android.widget.FrameLayout" package="p" content-desc="Profile" checkable="false" checked="false" clickable="true" enabled="true" focusable="true" focused="false" scrollable="false" long-clickable="false" password="false" selected="false" bounds="[50,50][100,100]" />
<node index="1" text="Say &quot;hi&quot;" resource-id="p:id/tab_home" class="android.widget.FrameLayout" package="p" content-desc="Home" checkable="false" checked="false" clickable="true" enabled="true" focusable="true" focused="false" scrollable="false" long-clickable="false" password="false" selected="false" bounds="[0,50][50,100]" />
</node></hierarchy>"#;
        let tree = parse_dump(xml).unwrap();
        for target in [1, 2] {
            let n = &tree.nodes()[target];
            let message = format!(
                "tab to lead to x: 4 taps on {} did not take",
                describe_node(n)
            );
            let pairs = quoted_pairs(&message);
            assert!(!pairs.is_empty(), "{message}");
            let hits: Vec<usize> = (0..tree.nodes().len())
                .filter(|&i| pairs_match(&tree.nodes()[i], &pairs))
                .collect();
            assert_eq!(hits, vec![target], "{message}");
        }
        // The text with a quote is left out, and the rest still names the view.
        assert!(!describe_node(&tree.nodes()[2]).contains("text="));
    }
}

//! Synthetic `uiautomator dump` documents: a realistic screen of a chosen size, for property
//! tests and the benchmark (the example includes this file by path).

#![allow(dead_code)]

/// Escapes an attribute value the way uiautomator does.
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c => out.push(c),
        }
    }
    out
}

/// One `<node>` element's opening text (without the closing `>` or `/>`), every attribute in
/// Android's order.
pub fn node_open(
    index: usize,
    text: &str,
    id: &str,
    class: &str,
    desc: &str,
    clickable: bool,
    bounds: (i32, i32, i32, i32),
) -> String {
    format!(
        "<node index=\"{index}\" text=\"{}\" resource-id=\"{}\" class=\"{}\" package=\"com.zhiliaoapp.musically\" content-desc=\"{}\" checkable=\"false\" checked=\"false\" clickable=\"{clickable}\" enabled=\"true\" focusable=\"{clickable}\" focused=\"false\" scrollable=\"false\" long-clickable=\"false\" password=\"false\" selected=\"false\" bounds=\"[{},{}][{},{}]\"",
        escape(text),
        escape(id),
        escape(class),
        escape(desc),
        bounds.0,
        bounds.1,
        bounds.2,
        bounds.3
    )
}

/// A feed-like screen with exactly `nodes` nodes: a root, rows of containers each holding a few
/// text views (captions with `&`, `#`, quotes), and as the very last node a clickable
/// ImageView with content-desc `Like` and no resource-id.
pub fn screen(nodes: usize) -> String {
    let nodes = nodes.max(2);
    let mut out = String::from(
        "<?xml version='1.0' encoding='UTF-8' standalone='yes' ?><hierarchy rotation=\"0\">",
    );
    out.push_str(&node_open(
        0,
        "",
        "",
        "android.widget.FrameLayout",
        "",
        false,
        (0, 0, 1080, 2400),
    ));
    out.push('>');
    let mut made = 1;
    let mut row = 0;
    // Leave one node for the Like button.
    while made < nodes - 1 {
        let y = ((row * 40) % 2200) as i32;
        out.push_str(&node_open(
            row,
            "",
            &format!("com.zhiliaoapp.musically:id/row_{row}"),
            "android.widget.LinearLayout",
            "",
            false,
            (0, y, 1080, y + 40),
        ));
        made += 1;
        let children = (nodes - 1 - made).min(3);
        if children == 0 {
            out.push_str(" />");
        } else {
            out.push('>');
            for c in 0..children {
                let text = format!("Caption {row}.{c} \"Tom & Jerry\" <3 #tag{c}");
                out.push_str(&node_open(
                    c,
                    &text,
                    &format!("com.zhiliaoapp.musically:id/cell_{c}"),
                    "android.widget.TextView",
                    &format!("cell {c}"),
                    c == 0,
                    (c as i32 * 360, y, c as i32 * 360 + 360, y + 40),
                ));
                out.push_str(" />");
                made += 1;
            }
            out.push_str("</node>");
        }
        row += 1;
    }
    out.push_str(&node_open(
        row,
        "",
        "",
        "android.widget.ImageView",
        "Like",
        true,
        (960, 1340, 1056, 1436),
    ));
    out.push_str(" /></node></hierarchy>");
    out
}

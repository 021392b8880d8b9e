//! The flow packs shipped in `flowpacks/` load, validate and cover both UI variants.

use std::path::PathBuf;

use phonefarm_flows::pack::{ACCOUNT_OUTCOME_SCREENS, PackError, PackSet};

pub fn packs_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../flowpacks")
}

pub const APP: &str = "com.zhiliaoapp.musically";

#[test]
fn shipped_packs_load_and_select_by_version() {
    let set = PackSet::load_path(&packs_dir()).unwrap();
    assert_eq!(set.packs().len(), 2);
    let pick = |v: &str| {
        set.select(APP, &v.parse().unwrap())
            .map(|p| p.name().to_string())
    };
    assert_eq!(pick("32.5.3").unwrap(), "tiktok-32");
    assert_eq!(pick("33.1.0").unwrap(), "tiktok-33");
    assert!(matches!(pick("34.0.0"), Err(PackError::NoPack { .. })));
    assert!(matches!(pick("31.9.9"), Err(PackError::NoPack { .. })));
}

#[test]
fn shipped_packs_define_every_screen_the_flows_know() {
    let set = PackSet::load_path(&packs_dir()).unwrap();
    let screens = [
        "feed",
        "search",
        "search_results",
        "video",
        "comments",
        "profile",
        "edit_profile",
        "upload_gallery",
        "upload_caption",
    ];
    for pack in set.packs() {
        pack.require(&[], &screens).unwrap();
        pack.require(&[], ACCOUNT_OUTCOME_SCREENS).unwrap();
        let watchers: Vec<_> = pack.watchers().iter().map(|w| w.name.as_str()).collect();
        assert_eq!(
            watchers,
            [
                "keyguard",
                "not_responding",
                "keeps_stopping",
                "low_battery",
                "update_prompt",
                "media_permission",
                "other_permission"
            ],
            "{}",
            pack.name()
        );
    }
}

#[test]
fn both_packs_have_the_same_selectors_and_non_id_fallbacks() {
    let set = PackSet::load_path(&packs_dir()).unwrap();
    let [a, b] = set.packs() else {
        panic!("two packs expected")
    };
    let names_a: Vec<_> = a.selector_names().collect();
    let names_b: Vec<_> = b.selector_names().collect();
    assert_eq!(names_a, names_b);
    for name in names_a {
        let strip = |p: &phonefarm_flows::FlowPack| {
            p.selector(name)
                .unwrap()
                .alternatives()
                .iter()
                .filter(|s| {
                    s.resource_id
                        .as_deref()
                        .is_none_or(|id| !id.starts_with(APP))
                })
                .cloned()
                .collect::<Vec<_>>()
        };
        assert_eq!(strip(a), strip(b), "selector {name}");
    }
}

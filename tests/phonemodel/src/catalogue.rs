//! The deterministic video catalogue: the feed is an endless sequence derived from a seed, and
//! search results are catalogue matches padded with videos made for the query.

use serde::Serialize;

/// One video the app can show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Video {
    /// Stable id, e.g. `vid-000017` (feed), `vid-q1a2b3c4d-02` (made for a search), `own-1`.
    pub id: String,
    /// Author handle without `@`.
    pub author: String,
    /// Caption as shown, hashtags included (`Morning stretch routine #fitness #yoga`).
    pub caption: String,
    /// Hashtags without `#`.
    pub hashtags: Vec<String>,
    /// The topic the video was drawn from (`fitness`, `cooking`, …; `search` or `own`).
    pub topic: String,
    pub likes: u64,
    pub comments: u32,
    /// An ad: the feed shows a `Sponsored` label on it.
    pub sponsored: bool,
}

struct Topic {
    name: &'static str,
    tags: &'static [&'static str],
    captions: &'static [&'static str],
    authors: &'static [&'static str],
}

const TOPICS: &[Topic] = &[
    Topic {
        name: "fitness",
        tags: &["fitness", "gym", "workout", "yoga", "health"],
        captions: &[
            "Morning stretch routine",
            "Leg day never gets easier",
            "5 minute core workout you can do anywhere",
            "How I stay consistent at the gym",
        ],
        authors: &["fit_with_sam", "gymrat.lena", "coach_daniel"],
    },
    Topic {
        name: "cooking",
        tags: &["cooking", "recipe", "dinner", "foodie", "pasta"],
        captions: &[
            "Easy 10 minute pasta",
            "Crispy garlic potatoes, trust me",
            "Meal prep for the whole week",
            "Grandma's secret soup recipe",
        ],
        authors: &["cook_with_mia", "chef.tomas", "kitchen_hacks"],
    },
    Topic {
        name: "travel",
        tags: &["travel", "wanderlust", "vacation", "roadtrip", "beach"],
        captions: &[
            "Hidden beach in Portugal",
            "48 hours in Tokyo",
            "Packing light for a two week trip",
            "Sunrise hike worth every step",
        ],
        authors: &["nomad.jules", "travelwithkai", "passport_pia"],
    },
    Topic {
        name: "pets",
        tags: &["pets", "cat", "dog", "puppy", "cute"],
        captions: &[
            "He heard the treat bag",
            "Cat vs cucumber, round two",
            "First day home with our puppy",
            "She refuses to walk in the rain",
        ],
        authors: &["mochi_the_cat", "barkley.dog", "pawsome_life"],
    },
    Topic {
        name: "gaming",
        tags: &["gaming", "gamer", "minecraft", "speedrun", "esports"],
        captions: &[
            "This clutch was unreal",
            "Building a castle in survival mode",
            "New world record attempt",
            "Ranking every boss fight",
        ],
        authors: &["pixel_pete", "gg.nora", "respawn_rex"],
    },
    Topic {
        name: "dance",
        tags: &["dance", "choreography", "dancechallenge", "trend"],
        captions: &[
            "Learn this in 30 seconds",
            "Trying the new trend with my sister",
            "Freestyle in the kitchen",
        ],
        authors: &["moves_by_ana", "dance.crew.9"],
    },
    Topic {
        name: "comedy",
        tags: &["comedy", "funny", "relatable", "skit"],
        captions: &[
            "When the group project is due tomorrow",
            "Me explaining my budget",
            "POV: the wifi goes down",
        ],
        authors: &["lol.larry", "skits_by_sara"],
    },
    Topic {
        name: "fashion",
        tags: &["fashion", "ootd", "style", "thrift"],
        captions: &[
            "Thrift haul under 50 dollars",
            "Three ways to style one jacket",
            "Outfit of the day: rainy edition",
        ],
        authors: &["styled.by.eve", "thrift_queen"],
    },
    Topic {
        name: "tech",
        tags: &["tech", "gadgets", "coding", "setup", "ai"],
        captions: &[
            "My desk setup tour",
            "This app saves me hours",
            "Unboxing the new phone",
            "Learn to code in 60 seconds",
        ],
        authors: &["techtok_tim", "dev.dana"],
    },
    Topic {
        name: "music",
        tags: &["music", "guitar", "cover", "singing"],
        captions: &[
            "Acoustic cover of a classic",
            "Writing a song in one hour",
            "Piano tutorial for beginners",
        ],
        authors: &["strings.sofia", "beats_by_bo"],
    },
    Topic {
        name: "diy",
        tags: &["diy", "crafts", "homedecor", "woodworking"],
        captions: &[
            "Turning old jars into lamps",
            "Weekend shelf build",
            "Room makeover on a budget",
        ],
        authors: &["make.it.max", "crafty_clara"],
    },
    Topic {
        name: "beauty",
        tags: &["beauty", "makeup", "skincare", "grwm"],
        captions: &[
            "Get ready with me",
            "My 3 step skincare routine",
            "Five minute makeup look",
        ],
        authors: &["glow.by.gia", "beautybyben"],
    },
];

/// splitmix64: a tiny, stable PRNG step (the catalogue must not change with a crate upgrade).
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn pick<T>(items: &[T], r: u64) -> &T {
    // Every table above is non-empty; `% len` keeps the index in range.
    &items[(r % items.len() as u64) as usize]
}

/// The feed's video at `index` for `seed`.
pub fn feed_video(seed: u64, index: u64) -> Video {
    let r = mix(seed ^ mix(index));
    let topic = pick(TOPICS, r);
    let caption = *pick(topic.captions, r >> 8);
    let author = *pick(topic.authors, r >> 16);
    let first = (r >> 24) as usize % topic.tags.len();
    let count = 2 + ((r >> 32) % 2) as usize;
    let hashtags: Vec<String> = (0..count.min(topic.tags.len()))
        .map(|i| topic.tags[(first + i) % topic.tags.len()].to_string())
        .collect();
    let caption = with_tags(caption, &hashtags);
    Video {
        id: format!("vid-{index:06}"),
        author: author.to_string(),
        caption,
        hashtags,
        topic: topic.name.to_string(),
        likes: (r >> 40) % 2_000_000,
        comments: ((r >> 20) % 5_000) as u32,
        sponsored: false,
    }
}

fn with_tags(caption: &str, tags: &[String]) -> String {
    let mut s = caption.to_string();
    for t in tags {
        s.push_str(" #");
        s.push_str(t);
    }
    s
}

/// Lower-case search terms of a query (`#` stripped, terms shorter than 2 chars dropped).
fn terms(query: &str) -> Vec<String> {
    query
        .split_whitespace()
        .map(|t| t.trim_start_matches('#').to_lowercase())
        .filter(|t| t.chars().count() >= 2)
        .collect()
}

/// How far into the feed a search looks for matches.
const SEARCH_SCAN: u64 = 400;
const MIN_RESULTS: usize = 12;
const MAX_RESULTS: usize = 30;

/// Search results for `query`: matching catalogue videos, padded with videos made for it.
pub fn search(seed: u64, query: &str) -> Vec<Video> {
    let terms = terms(query);
    let mut out = Vec::new();
    if !terms.is_empty() {
        for i in 0..SEARCH_SCAN {
            let v = feed_video(seed, i);
            let caption = v.caption.to_lowercase();
            if terms
                .iter()
                .any(|t| caption.contains(t.as_str()) || v.hashtags.iter().any(|h| h == t))
            {
                out.push(v);
                if out.len() == MAX_RESULTS {
                    break;
                }
            }
        }
    }
    let q = query.trim();
    if q.is_empty() {
        return out;
    }
    let tag: String = q
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric())
        .collect();
    let tag = if tag.is_empty() {
        "fyp".to_string()
    } else {
        tag
    };
    let h = q.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    const TEMPLATES: &[&str] = &[
        "Best {} ideas for beginners",
        "{} day in my life",
        "Trying {} for a week",
        "{} tips nobody tells you",
        "Why everyone is talking about {}",
        "My honest {} review",
    ];
    let mut i = 0u64;
    while out.len() < MIN_RESULTS {
        let r = mix(h ^ i);
        let caption = pick(TEMPLATES, r).replace("{}", q);
        let hashtags = vec![tag.clone(), "fyp".to_string()];
        out.push(Video {
            id: format!("vid-q{:08x}-{i:02}", h as u32),
            author: pick(
                &[
                    "daily.dose",
                    "trend_tracker",
                    "the.explainer",
                    "curious_cam",
                ],
                r >> 8,
            )
            .to_string(),
            caption: with_tags(&caption, &hashtags),
            hashtags,
            topic: "search".into(),
            likes: (r >> 16) % 500_000,
            comments: ((r >> 40) % 2_000) as u32,
            sponsored: false,
        });
        i += 1;
    }
    out
}

const ADS: &[(&str, &str)] = &[
    ("brightwear.shop", "Summer sale: everything 30% off"),
    ("fitfuel.drinks", "Fuel your workout with zero sugar"),
    ("wanderstays", "Book your next getaway tonight"),
];

/// The ad shown at feed position `index` (when the ads knob puts one there).
pub fn ad_video(index: u64) -> Video {
    let (author, caption) = *pick(ADS, mix(index));
    let hashtags = vec!["ad".to_string()];
    Video {
        id: format!("ad-{index:06}"),
        author: author.to_string(),
        caption: with_tags(caption, &hashtags),
        hashtags,
        topic: "ad".into(),
        likes: mix(index) % 50_000,
        comments: (mix(index) % 300) as u32,
        sponsored: true,
    }
}

/// Search suggestions shown on the empty search screen.
pub(crate) const SUGGESTIONS: &[&str] = &[
    "fitness motivation",
    "easy dinner recipes",
    "travel vlog",
    "cute cats",
];

/// A count as the app shows it: `999`, `12.3K`, `1.2M`.
pub(crate) fn short_count(n: u64) -> String {
    match n {
        0..=9_999 => n.to_string(),
        10_000..=999_999 => format!("{}.{}K", n / 1000, (n % 1000) / 100),
        _ => format!("{}.{}M", n / 1_000_000, (n % 1_000_000) / 100_000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feed_is_deterministic_and_seeded() {
        assert_eq!(feed_video(7, 3), feed_video(7, 3));
        let a: Vec<_> = (0..20).map(|i| feed_video(1, i).caption).collect();
        let b: Vec<_> = (0..20).map(|i| feed_video(2, i).caption).collect();
        assert_ne!(a, b);
        let v = feed_video(1, 5);
        assert_eq!(v.id, "vid-000005");
        assert!(v.hashtags.len() >= 2);
        assert!(
            v.hashtags
                .iter()
                .all(|h| v.caption.contains(&format!("#{h}")))
        );
    }

    #[test]
    fn common_topics_appear_in_the_feed() {
        let topics: Vec<_> = (0..100).map(|i| feed_video(0, i).topic).collect();
        for t in ["fitness", "cooking", "travel"] {
            assert!(topics.iter().any(|x| x == t), "{t} missing");
        }
    }

    #[test]
    fn search_matches_then_pads() {
        let r = search(0, "cooking");
        assert!(r.len() >= MIN_RESULTS && r.len() <= MAX_RESULTS);
        assert!(
            r.iter()
                .all(|v| v.caption.to_lowercase().contains("cooking")
                    || v.hashtags.iter().any(|h| h == "cooking"))
        );
        assert!(r.iter().any(|v| v.topic == "cooking"));
        let odd = search(0, "zzqx wobble");
        assert_eq!(odd.len(), MIN_RESULTS);
        assert!(odd.iter().all(|v| v.caption.contains("zzqx wobble")));
        assert!(search(0, "   ").is_empty());
    }

    #[test]
    fn counts() {
        assert_eq!(short_count(999), "999");
        assert_eq!(short_count(12_345), "12.3K");
        assert_eq!(short_count(1_234_567), "1.2M");
    }
}

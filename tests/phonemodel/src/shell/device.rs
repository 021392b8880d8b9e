//! Input and screen: `input`, `uiautomator dump`, `screencap`.

use super::{DEFAULT_DUMP_PATH, err, out, status};
use crate::actions::Action;
use crate::app::Foreground;
use crate::faults::Cost;
use crate::fs::S_IFREG;
use crate::ui::{SCREEN_HEIGHT, SCREEN_WIDTH};
use crate::{Phone, ScreenKind, ShellOutput, Viewed, png};

/// Android's `input text` escaping: `%s` is a space.
fn input_text_unescape(s: &str) -> String {
    s.replace("%s", " ")
}

/// Parses a key code: a number, `KEYCODE_NAME` or `NAME`. Unknown names are 0
/// (`KEYCODE_UNKNOWN`), as Android's `KeyEvent.keyCodeFromString` answers.
pub fn keycode(s: &str) -> u32 {
    if let Ok(n) = s.parse::<u32>() {
        return n;
    }
    let name = s.strip_prefix("KEYCODE_").unwrap_or(s);
    let named = match name {
        "HOME" => 3,
        "BACK" => 4,
        "CALL" => 5,
        "ENDCALL" => 6,
        "DPAD_UP" => 19,
        "DPAD_DOWN" => 20,
        "DPAD_LEFT" => 21,
        "DPAD_RIGHT" => 22,
        "DPAD_CENTER" => 23,
        "VOLUME_UP" => 24,
        "VOLUME_DOWN" => 25,
        "POWER" => 26,
        "CAMERA" => 27,
        "TAB" => 61,
        "SPACE" => 62,
        "ENTER" => 66,
        "DEL" => 67,
        "MENU" => 82,
        "SEARCH" => 84,
        "ESCAPE" => 111,
        "FORWARD_DEL" => 112,
        "MOVE_HOME" => 122,
        "MOVE_END" => 123,
        "APP_SWITCH" => 187,
        "SLEEP" => 223,
        "WAKEUP" => 224,
        _ => 0,
    };
    if named != 0 {
        return named;
    }
    match name.as_bytes() {
        [c @ b'0'..=b'9'] => 7 + u32::from(c - b'0'),
        [c @ b'A'..=b'Z'] => 29 + u32::from(c - b'A'),
        _ => 0,
    }
}

fn parse_coord(s: &str) -> Option<i32> {
    let v: f64 = s.parse().ok()?;
    v.is_finite().then(|| v.clamp(-1e6, 1e6) as i32)
}

impl Phone {
    /// `input …`: runs the command, charges its latency, records a transition if the screen
    /// changed, and fires the faults waiting for input.
    pub(super) fn cmd_input(&mut self, args: &[&str]) -> ShellOutput {
        self.charge(Cost::Input);
        let before = self.before_change();
        let out = self.input_command(args);
        self.note_transition(before);
        self.faults_on_input();
        out
    }

    fn input_command(&mut self, args: &[&str]) -> ShellOutput {
        const SOURCES: &[&str] = &[
            "keyboard",
            "mouse",
            "touchpad",
            "touchscreen",
            "stylus",
            "trackball",
            "joystick",
            "touchnavigation",
            "gamepad",
            "dpad",
            "rotaryencoder",
        ];
        let mut args = args;
        while let Some(first) = args.first() {
            if SOURCES.contains(first) {
                args = &args[1..];
            } else if *first == "-d" {
                args = args.get(2..).unwrap_or(&[]);
            } else {
                break;
            }
        }
        let usage = |what: &str| {
            err(
                format!("Error: {what}\nUsage: input [<source>] <command> [<arg>...]\n"),
                1,
            )
        };
        let screen = self.config.screen;
        match args {
            ["tap", x, y] => match (parse_coord(x), parse_coord(y)) {
                (Some(x), Some(y)) => {
                    let (x, y) = screen.to_layout(x, y);
                    self.tap(x, y);
                    status(0)
                }
                _ => usage("invalid arguments for command: tap"),
            },
            ["swipe" | "draganddrop", x1, y1, x2, y2, rest @ ..] => {
                let coords = [x1, y1, x2, y2].map(|c| parse_coord(c));
                let duration = match rest {
                    [] => Some(300),
                    [ms] => ms.parse::<u32>().ok(),
                    _ => None,
                };
                match (coords, duration) {
                    ([Some(a), Some(b), Some(c), Some(d)], Some(ms)) => {
                        let (a, b) = screen.to_layout(a, b);
                        let (c, d) = screen.to_layout(c, d);
                        self.swipe(a, b, c, d, ms);
                        status(0)
                    }
                    _ => usage("invalid arguments for command: swipe"),
                }
            }
            ["press"] => {
                self.tap(SCREEN_WIDTH / 2, SCREEN_HEIGHT / 2);
                status(0)
            }
            ["text", text, ..] => {
                // Stock Android maps text through the key character map, which has no keys for
                // anything beyond ASCII: such text types nothing and the command fails.
                if !text.is_ascii() {
                    return err(
                        "Exception occurred while executing 'text':\njava.lang.NullPointerException: \
                         Attempt to get length of null array\n",
                        255,
                    );
                }
                self.type_text(&input_text_unescape(text));
                status(0)
            }
            ["keyevent", codes @ ..] => {
                let codes: Vec<&&str> = codes.iter().filter(|c| !c.starts_with("--")).collect();
                if codes.is_empty() {
                    return usage("missing keycode");
                }
                for c in codes {
                    self.key(keycode(c));
                }
                status(0)
            }
            [cmd, ..] => usage(&format!("Unknown command: {cmd}")),
            [] => usage("missing command"),
        }
    }

    pub(super) fn cmd_uiautomator(&mut self, args: &[&str]) -> ShellOutput {
        let compressed = args.contains(&"--compressed");
        let rest: Vec<&str> = match args.first() {
            Some(&"dump") => args[1..]
                .iter()
                .copied()
                .filter(|a| !a.starts_with("--"))
                .collect(),
            _ => {
                return err(
                    "Usage: uiautomator <subcommand> [options]\n\nAvailable subcommands:\n\nhelp: displays help message\n\n\
                     runtest: executes UI automation tests\n\ndump: creates an XML dump of current UI hierarchy\n\n\
                     events: prints out accessibility events until terminated\n",
                    1,
                );
            }
        };
        let path = rest.first().copied().unwrap_or(DEFAULT_DUMP_PATH);
        self.faults_on_dump();
        if self.config.failing_dumps > 0 && self.screen_on {
            self.config.failing_dumps -= 1;
            self.charge(Cost::IdleTimeout);
            return err("ERROR: could not get idle state.\n", 1);
        }
        if self.config.behaviour.animated_dumps_fail
            && !compressed
            && self.screen_on
            && self.animated()
        {
            self.charge(Cost::IdleTimeout);
            return err("ERROR: could not get idle state.\n", 1);
        }
        self.charge(Cost::Dump);
        let Some(xml) = self.dump_window(compressed) else {
            return err(
                "ERROR: null root node returned by UiTestAutomationBridge.\n",
                1,
            );
        };
        let done = format!("UI hierchary dumped to: {path}\n");
        if matches!(path, "/dev/tty" | "/dev/stdout" | "/proc/self/fd/1") {
            let mut s = xml.into_bytes();
            s.extend_from_slice(done.as_bytes());
            return out(s);
        }
        let free = self.storage_free();
        let clock = self.config.clock;
        match self
            .fs
            .write(path, xml.into_bytes(), S_IFREG | 0o660, clock, free)
        {
            Ok(()) => out(done),
            Err(e) => err(format!("ERROR: could not write {path}: {e}\n"), 1),
        }
    }

    /// The system viewer opens `path` full screen (what `am start -a
    /// android.intent.action.VIEW -d file://<path>` does); a missing or unreadable file shows
    /// the viewer with no colour, as a real one shows its "can't load" page.
    pub(crate) fn view_image(&mut self, path: &str) -> ShellOutput {
        self.charge(Cost::Launch);
        let colour = self.fs.read(path).ok().and_then(png::first_rgb);
        let viewed = Viewed {
            path: path.to_string(),
            colour,
        };
        self.actions.push(Action::ImageViewed {
            path: viewed.path.clone(),
            colour,
        });
        self.viewing = Some(viewed);
        self.app.foreground = Foreground::Viewer;
        out(format!(
            "Starting: Intent {{ act=android.intent.action.VIEW dat=file://{path} }}\n"
        ))
    }

    /// `screencap`: a black PNG of the display's size whose `tEXt` chunk names what is on
    /// screen (the screen, the video playing, the viewer's colour), so captures of different
    /// screens differ as real ones do and captures of one screen are byte-identical.
    pub(super) fn cmd_screencap(&mut self, args: &[&str]) -> ShellOutput {
        self.charge(Cost::Screencap);
        let file = args.iter().copied().find(|a| !a.starts_with('-'));
        let screen = self.config.screen;
        let png = png::with_padding(
            png::with_text(
                png::black_png(screen.width as u32, screen.height as u32),
                "Description",
                &self.screen_description(),
            ),
            self.config.screencap_padding,
        );
        self.actions.push(Action::Screenshot);
        match file {
            None => out(png),
            Some(path) => {
                let free = self.storage_free();
                let clock = self.config.clock;
                match self.fs.write(path, png, S_IFREG | 0o660, clock, free) {
                    Ok(()) => status(0),
                    Err(e) => err(format!("Error opening file: {path} ({e})\n"), 1),
                }
            }
        }
    }
}

impl Phone {
    /// What a screenshot shows, as text: `screen=Feed video=v-12`, `screen=ImageViewer
    /// colour=ff00ff`.
    fn screen_description(&self) -> String {
        let kind = self.screen();
        let mut s = format!("screen={kind:?}");
        if let (ScreenKind::Feed | ScreenKind::Player | ScreenKind::CommentSheet, Some(v)) =
            (kind, self.current_video())
        {
            s.push_str(&format!(" video={}", v.id));
        }
        if let Some(Viewed {
            colour: Some([r, g, b]),
            ..
        }) = self.viewing()
        {
            s.push_str(&format!(" colour={r:02x}{g:02x}{b:02x}"));
        }
        s
    }
}

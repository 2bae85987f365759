use std::fmt;

use argon2::password_hash::rand_core::{OsRng, RngCore};
use zxcvbn::{Entropy, Score};

use super::{UserEmail, UserName};

/// A plain-text password that satisfies the policy. It never prints.
#[derive(Clone)]
pub struct Password(String);

pub const MIN_LEN: usize = 8;
pub const MAX_LEN: usize = 128;

impl Password {
    /// Checks a new password against the policy: 8 to 128 characters.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let length = raw.chars().count();
        if length < MIN_LEN {
            return Err(format!("must be at least {MIN_LEN} characters"));
        }
        if length > MAX_LEN {
            return Err(format!("must be at most {MAX_LEN} characters"));
        }
        Ok(Self(raw.to_owned()))
    }

    /// A password nobody knows (32 random bytes): it locks an account until
    /// its owner sets a new one with a reset code.
    pub fn unknowable() -> Self {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        Self(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
    }

    /// Wraps a password offered to prove who the caller is. The policy is not
    /// applied: it only has to match, and checking it would tell the caller
    /// something about the stored one.
    pub fn candidate(raw: &str) -> Self {
        Self(raw.to_owned())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Rejects passwords that are easy to guess: common ones, keyboard walks,
    /// repeats, and ones built from the user's own email or name, as judged
    /// by zxcvbn and its built-in dictionaries.
    ///
    /// zxcvbn's cost grows steeply with length and with the number of
    /// characters that can stand for letters (`4` for a, `$` for s): it
    /// tries each combination of such substitutions on every substring, and
    /// took over a second on 128 symbols and digits. So it judges bounded
    /// parts (see `judged_parts`), and length adds strength only where it is
    /// not repetition:
    /// - a run of 4 or more characters that repeats earlier text counts for
    ///   nothing ("password" 16 times is judged as "password", 128 × "a" as
    ///   "a");
    /// - the rest is cut into windows of at most 32 characters and 6
    ///   distinct substitutes, and zxcvbn judges each, knowing the user's
    ///   email and name;
    /// - the password's guesses are the product of the windows' (as zxcvbn
    ///   multiplies those of consecutive patterns, but without the extra it
    ///   adds for each one), scored with zxcvbn's thresholds. Once they are
    ///   enough, the remaining windows are not judged: they can only add.
    ///
    /// A password that fits in one window and repeats nothing is judged by
    /// zxcvbn whole, as it always was.
    pub fn check_strength(
        &self,
        email: Option<&UserEmail>,
        name: Option<&UserName>,
    ) -> Result<(), String> {
        let context = known_words(email, name);
        let context: Vec<&str> = context.iter().map(String::as_str).collect();
        let chars: Vec<char> = self.0.chars().collect();
        let mut guesses: u64 = 1;
        let mut warning = None;
        for part in judged_parts(&chars) {
            let estimate = judge(part, &context);
            guesses = guesses.saturating_mul(estimate.guesses());
            if score(guesses) >= MIN_STRENGTH {
                return Ok(());
            }
            warning = warning.or(estimate.feedback().and_then(|feedback| feedback.warning()));
        }
        let mut reason = format!(
            "is too easy to guess (strength {} of 4, at least {} needed)",
            u8::from(score(guesses)),
            u8::from(MIN_STRENGTH)
        );
        if let Some(warning) = warning {
            reason = format!("{reason}: {warning}");
        }
        Err(reason)
    }
}

/// The user's email and name, whole, in parts, and run together: "Ada
/// Lovelace" gives "ada lovelace", "ada", "lovelace" and "adalovelace".
fn known_words(email: Option<&UserEmail>, name: Option<&UserName>) -> Vec<String> {
    let email = email.map_or("", UserEmail::as_str);
    let local_part = email.split('@').next().unwrap_or_default();
    let is_separator = |c: char| c.is_whitespace() || ".-_+".contains(c);
    let mut words: Vec<String> = vec![email.to_owned()];
    for text in [local_part, name.map_or("", UserName::as_str)] {
        let text = text.to_lowercase();
        let run_together = text.replace(is_separator, "");
        let parts: Vec<String> = text.split(is_separator).map(str::to_owned).collect();
        words.push(text);
        words.push(run_together);
        words.extend(parts);
    }
    words.retain(|word| !word.is_empty());
    words
}

/// zxcvbn's judgement of one part, knowing `context`.
fn judge(part: &[char], context: &[&str]) -> Entropy {
    zxcvbn::zxcvbn(&part.iter().collect::<String>(), context)
}

/// zxcvbn's "safely unguessable": about 10^8 guesses or more.
const MIN_STRENGTH: Score = Score::Three;

/// zxcvbn's score for a number of guesses (its `calculate_score`, private).
fn score(guesses: u64) -> Score {
    const DELTA: u64 = 5;
    match guesses {
        g if g < 1_000 + DELTA => Score::Zero,
        g if g < 1_000_000 + DELTA => Score::One,
        g if g < 100_000_000 + DELTA => Score::Two,
        g if g < 10_000_000_000 + DELTA => Score::Three,
        _ => Score::Four,
    }
}

/// A run at least this long that repeats earlier text adds no strength.
const MIN_REPEAT: usize = 4;
/// The most characters zxcvbn judges at once.
const WINDOW_CHARS: usize = 32;
/// The most distinct substitutes (`L33T`) zxcvbn judges at once. It tries
/// up to 36 combinations of 6 of them (of 8, 75; of all 20, 800).
const WINDOW_L33T: usize = 6;
/// The characters zxcvbn's l33t table lets stand for letters.
const L33T: &str = "4@8({[<3691!|70$5+%2";

/// The parts of a password that zxcvbn judges, in order: the password less
/// its repeats, cut into windows. A window costs zxcvbn at most 36
/// combinations of substitutes tried on each of its substrings (528 of 32
/// characters); 128 characters make at most four such windows, and shorter
/// windows cost less. The costliest four we could make took 9 to 22 ms in
/// all in a release build, on two busy cores; whole, a 128-character
/// keyboard walk took 1.9 s there.
fn judged_parts(chars: &[char]) -> Vec<&[char]> {
    unrepeated_runs(chars)
        .into_iter()
        .flat_map(windows)
        .collect()
}

/// The runs of `chars` left when each run of `MIN_REPEAT` or more
/// characters that equals text starting earlier is taken out. The earlier
/// text may overlap the run, so "abababab" is "ab" and a repeat of 6.
fn unrepeated_runs(chars: &[char]) -> Vec<&[char]> {
    let mut runs = Vec::new();
    let (mut start, mut at) = (0, 0);
    while at < chars.len() {
        let repeat = (0..at)
            .map(|earlier| {
                chars[at..]
                    .iter()
                    .zip(&chars[earlier..])
                    .take_while(|(a, b)| a == b)
                    .count()
            })
            .max()
            .unwrap_or(0);
        if repeat >= MIN_REPEAT {
            if start < at {
                runs.push(&chars[start..at]);
            }
            at += repeat;
            start = at;
        } else {
            at += 1;
        }
    }
    if start < chars.len() {
        runs.push(&chars[start..]);
    }
    runs
}

/// `run` cut into windows of at most `WINDOW_CHARS` characters and
/// `WINDOW_L33T` distinct substitutes.
fn windows(run: &[char]) -> Vec<&[char]> {
    let mut windows = Vec::new();
    let mut start = 0;
    while start < run.len() {
        let mut substitutes: Vec<char> = Vec::new();
        let mut end = start;
        while end < run.len() && end - start < WINDOW_CHARS {
            let c = run[end];
            if L33T.contains(c) && !substitutes.contains(&c) {
                if substitutes.len() == WINDOW_L33T {
                    break;
                }
                substitutes.push(c);
            }
            end += 1;
        }
        windows.push(&run[start..end]);
        start = end;
    }
    windows
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// An argon2 hash in PHC string form; the salt and parameters live inside.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    pub fn from_phc(phc: String) -> Self {
        Self(phc)
    }

    pub fn as_phc(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_lengths_from_8_to_128_characters() {
        assert!(Password::parse(&"p".repeat(8)).is_ok());
        assert!(Password::parse(&"p".repeat(128)).is_ok());
    }

    #[test]
    fn rejects_passwords_shorter_than_8_characters() {
        let error = Password::parse("short").expect_err("too short");
        assert_eq!(error, "must be at least 8 characters");
    }

    #[test]
    fn rejects_passwords_longer_than_128_characters() {
        let error = Password::parse(&"p".repeat(129)).expect_err("too long");
        assert_eq!(error, "must be at most 128 characters");
    }

    #[test]
    fn counts_characters_not_bytes() {
        assert!(
            Password::parse("ééééééé").is_err(),
            "7 characters, 14 bytes"
        );
        assert!(
            Password::parse(&"é".repeat(128)).is_ok(),
            "128 characters, 256 bytes"
        );
    }

    fn ada() -> (UserEmail, UserName) {
        (
            UserEmail::parse("ada.lovelace@example.com").expect("valid"),
            UserName::parse("Ada Lovelace").expect("valid"),
        )
    }

    #[test]
    fn a_long_unusual_passphrase_is_strong_enough() {
        let (email, name) = ada();
        let password = Password::parse("correct horse battery").expect("valid length");
        assert_eq!(password.check_strength(Some(&email), Some(&name)), Ok(()));
    }

    #[test]
    fn common_passwords_are_rejected() {
        let (email, name) = ada();
        for common in ["password123", "qwertyuiop", "iloveyou1", "12345678"] {
            let password = Password::parse(common).expect("valid length");
            let reason = password
                .check_strength(Some(&email), Some(&name))
                .expect_err(common);
            assert!(reason.starts_with("is too easy to guess"), "{reason}");
        }
    }

    #[test]
    fn passwords_built_from_the_users_email_or_name_are_rejected() {
        let (email, name) = ada();
        for own in ["ada.lovelace@example.com", "adalovelace1", "AdaLovelace!"] {
            let password = Password::parse(own).expect("valid length");
            assert!(
                password.check_strength(Some(&email), Some(&name)).is_err(),
                "{own}"
            );
        }
    }

    #[test]
    fn a_long_repetition_is_as_weak_as_what_it_repeats() {
        let (email, name) = ada();
        for repeated in [
            "a".repeat(128),
            "password".repeat(16),
            "password1".repeat(14),
            "qwertyuiop".repeat(12),
            "ada.lovelace@example.com".repeat(5),
            "P@ssw0rd!".repeat(14),
        ] {
            let password = Password::parse(&repeated).expect("valid length");
            assert!(
                password.check_strength(Some(&email), Some(&name)).is_err(),
                "{repeated} should be rejected"
            );
        }
    }

    #[test]
    fn length_that_is_not_repetition_adds_strength_after_a_weak_start() {
        let (email, name) = ada();
        let weak_start = "a".repeat(100);
        let password = Password::parse(&format!("{weak_start}xK9#mP2$vL5@nQ8!")).expect("valid");
        assert_eq!(password.check_strength(Some(&email), Some(&name)), Ok(()));
    }

    #[test]
    fn a_short_password_without_repeats_gets_zxcvbns_own_verdict() {
        let (email, name) = ada();
        let context = known_words(Some(&email), Some(&name));
        let context: Vec<&str> = context.iter().map(String::as_str).collect();
        for raw in [
            "correct horse battery",
            "Tr0ub4dor&3",
            "adalovelace1",
            "qwertyuiop",
            "iloveyou1",
            "summer2023!",
            "the quick brown fox jumps",
            "xK9#mP2$vL5@nQ8!",
        ] {
            let ours = Password::parse(raw)
                .expect("valid length")
                .check_strength(Some(&email), Some(&name))
                .is_ok();
            let zxcvbns = zxcvbn::zxcvbn(raw, &context).score() >= MIN_STRENGTH;
            assert_eq!(ours, zxcvbns, "{raw}");
        }
    }

    fn text(parts: Vec<&[char]>) -> Vec<String> {
        parts.iter().map(|part| part.iter().collect()).collect()
    }

    #[test]
    fn runs_of_four_or_more_characters_that_repeat_earlier_text_are_left_out() {
        let chars = |s: &str| s.chars().collect::<Vec<char>>();
        assert_eq!(text(unrepeated_runs(&chars("abababab"))), ["ab"]);
        assert_eq!(
            text(unrepeated_runs(&chars("hunter2xhunter2y"))),
            ["hunter2x", "y"]
        );
        assert_eq!(
            text(unrepeated_runs(&chars("abcabc"))),
            ["abcabc"],
            "3 only"
        );
    }

    #[test]
    fn windows_hold_at_most_32_characters_and_6_distinct_substitutes() {
        let letters: Vec<char> = "abcdefghijklmnopqrstuvwxyz".repeat(3).chars().collect();
        let lengths: Vec<usize> = windows(&letters).iter().map(|w| w.len()).collect();
        assert_eq!(lengths, [32, 32, 14]);
        let substitutes: Vec<char> = "4@8({[<3691!".chars().collect();
        assert_eq!(text(windows(&substitutes)), ["4@8({[", "<3691!"]);
    }

    /// Deterministic stand-ins for random passwords: `len` characters of
    /// `alphabet`, from an xorshift generator.
    fn scrambled(alphabet: &str, len: usize, mut seed: u64) -> String {
        let alphabet: Vec<char> = alphabet.chars().collect();
        (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                alphabet[(seed % alphabet.len() as u64) as usize]
            })
            .collect()
    }

    #[test]
    fn judging_every_part_of_a_128_character_password_takes_less_than_50_ms() {
        use std::time::{Duration, Instant};

        let (email, name) = ada();
        let context = known_words(Some(&email), Some(&name));
        let context: Vec<&str> = context.iter().map(String::as_str).collect();
        // The costliest 6 substitutes, among letters they stand for, in
        // four full windows.
        let costliest = scrambled("4@1|7+aeilnorst", 128, 7);
        assert_eq!(
            windows(&costliest.chars().collect::<Vec<_>>()).len(),
            4,
            "four windows of 32"
        );
        let worst_cases = [
            costliest,
            scrambled("0123456789!@#$%^&*()_+-=[]{}|;:,.<>?/~`'\"\\", 128, 1),
            scrambled(L33T, 128, 2),
            "a".repeat(128),
            "password".repeat(16),
            "correcthorsebatterystaplepasswordiloveyoudragonmonkeyfootballbaseball\
             letmeinshadowmastersunshineprincessqwertyfreedomwhatevertrustno1"
                .chars()
                .take(128)
                .collect(),
            "p@$$w0rd!l0v3y0u7r0ub4d0r&3c0rr3c7h0r$3b4773ry$74p13dr4g0nm0nk3yf007b4llb\
             4$3b4ll13tm31n$h4d0wm4$73r$un$h1n3pr1nc3$$qw3r7yfr33d0m"
                .chars()
                .take(128)
                .collect(),
            "qwertyuiop[]asdfghjkl;'zxcvbnm,./1234567890-=!@#$%^&*()_+QWERTYUIOP{}|ASDFGHJKL:\
             ZXCVBNM<>?`~1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik,9ol."
                .chars()
                .take(128)
                .collect(),
        ];
        for password in worst_cases {
            let chars: Vec<char> = password.chars().collect();
            assert_eq!(chars.len(), 128, "{password}");
            // The least of five runs: the machine's other work only adds.
            let took = (0..5)
                .map(|_| {
                    let start = Instant::now();
                    for part in judged_parts(&chars) {
                        judge(part, &context);
                    }
                    start.elapsed()
                })
                .min()
                .unwrap_or_default();
            assert!(took < Duration::from_millis(50), "{password} took {took:?}");
        }
    }

    #[test]
    fn never_prints_its_secret() {
        let password = Password::parse("correct horse").expect("valid");
        assert!(!format!("{password:?}").contains("horse"));
        let hash = PasswordHash::from_phc("$argon2id$v=19$m=8,t=1,p=1$c2FsdA$aGFzaA".into());
        assert!(!format!("{hash:?}").contains("argon2"));
    }
}

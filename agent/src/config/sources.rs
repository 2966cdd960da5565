//! What may come from elsewhere than the file: the token (read again before
//! every push), and the values flags or the environment override.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The token the agent shows menshen. Never printed: `Debug` redacts it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(pub(super) String);

impl Token {
    /// A token from its text, surrounding whitespace removed; `None` when empty.
    pub fn new(text: &str) -> Option<Token> {
        let t = text.trim();
        (!t.is_empty()).then(|| Token(t.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Where the token comes from. The file is read again before every push, so
/// a rotated token is picked up without a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    Env(Token),
    File(PathBuf),
}

impl TokenSource {
    pub fn read(&self) -> Result<Token, String> {
        match self {
            TokenSource::Env(t) => Ok(t.clone()),
            TokenSource::File(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read token file {}: {e}", path.display()))?;
                Token::new(&text).ok_or_else(|| format!("token file {} is empty", path.display()))
            }
        }
    }
}

/// Values that may override the file (from flags or the environment).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub menshen_url: Option<String>,
    pub metrics_listen: Option<SocketAddr>,
    pub token: Option<Token>,
    pub token_file: Option<PathBuf>,
}

impl Overrides {
    /// The token to use: a token given here, else a token file given here,
    /// else the file's `token_file`.
    pub(super) fn token(&self, file: Option<TokenSource>) -> Option<TokenSource> {
        match (&self.token, &self.token_file) {
            (Some(t), _) => Some(TokenSource::Env(t.clone())),
            (None, Some(p)) => Some(TokenSource::File(p.clone())),
            (None, None) => file,
        }
    }
}

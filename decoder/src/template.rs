//! The chat template: the GGUF file's `tokenizer.chat_template` (a Jinja template, rendered
//! with minijinja) where present, ChatML otherwise.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The message's text.
    pub content: String,
}

impl Message {
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Message { role: "system".into(), content: content.into() }
    }
    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Message { role: "user".into(), content: content.into() }
    }
    /// An assistant message (an earlier reply).
    pub fn assistant(content: impl Into<String>) -> Self {
        Message { role: "assistant".into(), content: content.into() }
    }
}

/// Renders chat messages into the prompt text the model was trained on.
#[derive(Debug, Clone)]
pub enum ChatTemplate {
    /// The model's own Jinja template (GGUF `tokenizer.chat_template`).
    Jinja {
        /// The template's source.
        source: String,
        /// The beginning-of-sequence token's text.
        bos: String,
        /// The end-of-sequence token's text.
        eos: String,
    },
    /// ChatML (`<|im_start|>role ... <|im_end|>`), the fallback.
    ChatMl,
}

impl ChatTemplate {
    /// The template from the metadata, checked by rendering a sample; ChatML when absent or
    /// when it does not render.
    pub fn new(source: Option<String>, bos: String, eos: String) -> Self {
        if let Some(source) = source {
            let t = ChatTemplate::Jinja { source, bos, eos };
            match t.render(&[Message::system("s"), Message::user("u")]) {
                Ok(_) => return t,
                Err(e) => tracing::warn!("the model's chat template does not render ({e}); using ChatML"),
            }
        }
        ChatTemplate::ChatMl
    }

    /// The prompt for `messages`, ending where the assistant's reply starts.
    pub fn render(&self, messages: &[Message]) -> Result<String> {
        match self {
            ChatTemplate::ChatMl => {
                let mut out = String::new();
                for m in messages {
                    out.push_str(&format!("<|im_start|>{}\n{}<|im_end|>\n", m.role, m.content));
                }
                out.push_str("<|im_start|>assistant\n");
                Ok(out)
            }
            ChatTemplate::Jinja { source, bos, eos } => {
                let mut env = minijinja::Environment::new();
                env.add_template("chat", source)
                    .map_err(|e| Error::Template(format!("the model's template does not parse: {e}")))?;
                let t = env.get_template("chat").map_err(|e| Error::Template(e.to_string()))?;
                t.render(minijinja::context! {
                    messages => messages,
                    add_generation_prompt => true,
                    bos_token => bos,
                    eos_token => eos,
                })
                .map_err(|e| Error::Template(format!("cannot render it: {e}")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMOL: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn smollm_template_equals_chatml() {
        let msgs = [Message::system("Be brief."), Message::user("Hi")];
        let j = ChatTemplate::new(Some(SMOL.into()), String::new(), String::new());
        assert!(matches!(j, ChatTemplate::Jinja { .. }));
        assert_eq!(j.render(&msgs).unwrap(), ChatTemplate::ChatMl.render(&msgs).unwrap());
    }

    #[test]
    fn broken_template_falls_back_to_chatml() {
        let t = ChatTemplate::new(Some("{% for %}".into()), String::new(), String::new());
        assert!(matches!(t, ChatTemplate::ChatMl));
    }
}

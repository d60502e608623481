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
    /// The template from the metadata, checked by rendering a sample conversation; ChatML when
    /// the file has none. A template that does not render is an error: prompting a model in
    /// another format than it was trained on would answer badly, silently.
    pub fn new(source: Option<String>, bos: String, eos: String) -> Result<Self> {
        let Some(source) = source else { return Ok(ChatTemplate::ChatMl) };
        let t = ChatTemplate::Jinja { source, bos, eos };
        t.render(&[Message::system("s"), Message::user("u"), Message::assistant("a"), Message::user("u")])
            .map_err(|e| Error::Template(format!("the model's chat template (tokenizer.chat_template) fails: {e}")))?;
        Ok(t)
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
                // As `transformers` renders chat templates.
                env.set_trim_blocks(true);
                env.set_lstrip_blocks(true);
                // Hugging Face templates are Jinja as Python runs it: string methods
                // (`.strip()`, `.startswith()`...) and `raise_exception`.
                env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
                env.add_function("raise_exception", |msg: String| -> std::result::Result<String, minijinja::Error> {
                    Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, msg))
                });
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
        let j = ChatTemplate::new(Some(SMOL.into()), String::new(), String::new()).unwrap();
        assert!(matches!(j, ChatTemplate::Jinja { .. }));
        assert_eq!(j.render(&msgs).unwrap(), ChatTemplate::ChatMl.render(&msgs).unwrap());
    }

    #[test]
    fn a_broken_template_is_an_error_and_none_is_chatml() {
        let err = ChatTemplate::new(Some("{% for %}".into()), String::new(), String::new()).unwrap_err();
        assert!(err.to_string().contains("chat template"), "{err}");
        let raises = "{{ raise_exception('only user and assistant roles') }}";
        assert!(ChatTemplate::new(Some(raises.into()), String::new(), String::new()).is_err());
        assert!(matches!(ChatTemplate::new(None, String::new(), String::new()).unwrap(), ChatTemplate::ChatMl));
        // Python string methods, as Qwen's and Llama's templates use them.
        let py = "{% for m in messages %}{{ m.content.strip().upper() }}{% if m.content.startswith(' ') %}!{% endif %}{% endfor %}";
        let t = ChatTemplate::new(Some(py.into()), String::new(), String::new()).unwrap();
        assert_eq!(t.render(&[Message::user(" hi ")]).unwrap(), "HI!");
    }
}

//! Chat templates from model metadata (Hugging Face Jinja), rendered with minijinja.

use kokon_proto::ChatMessage;
use minijinja::{Environment, Error, ErrorKind, context};

use crate::EngineError;

/// Renders `template` over `messages` with a trailing generation prompt.
pub fn render(template: &str, messages: &[ChatMessage]) -> Result<String, EngineError> {
    let mut env = Environment::new();
    env.add_function("raise_exception", |msg: String| -> Result<String, Error> {
        Err(Error::new(ErrorKind::InvalidOperation, msg))
    });
    env.add_template("chat", template)
        .map_err(|e| EngineError::Failed(format!("model chat template does not parse: {e}")))?;
    let msgs: Vec<_> = messages
        .iter()
        .map(|m| context! { role => m.role.as_str(), content => m.content.as_str() })
        .collect();
    env.get_template("chat")
        .and_then(|t| t.render(context! { messages => msgs, add_generation_prompt => true, bos_token => "", eos_token => "" }))
        .map_err(|e| EngineError::BadRequest(format!("chat template refused the conversation: {}", e.kind())))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHATML: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are helpful<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn renders_chatml_with_default_system_prompt() {
        let m = vec![ChatMessage {
            role: "user".into(),
            content: "Hi".into(),
        }];
        assert_eq!(
            render(CHATML, &m).unwrap(),
            "<|im_start|>system\nYou are helpful<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn template_errors_are_typed() {
        let m = vec![ChatMessage {
            role: "user".into(),
            content: "Hi".into(),
        }];
        let err = render("{{ raise_exception('roles must alternate') }}", &m).unwrap_err();
        assert!(matches!(err, EngineError::BadRequest(_)));
    }
}

#!/usr/bin/python3
"""Writes tests/models/tokenizer/chat_template_golden.h: conversations as the
real Hugging Face chat templates render them.

models/tokenizer/chat_format.cc renders each chat family by hand (no Jinja
interpreter in C++); tests/models/tokenizer/tokenizer_chat_format_test.cc
holds it to the strings this script writes. Each conversation is rendered
with jinja2 the way transformers' apply_chat_template does (a sandboxed
environment with trim_blocks and lstrip_blocks, add_generation_prompt=True,
raise_exception), and the leading BOS text is cut, since vitrine's rendering
starts after BOS (the tokenizer adds it).

The templates:
  llama3   ../shared/tokenizers/llama3/tokenizer_config.json (read here)
  chatml   ../shared/tokenizers/qwen3/tokenizer_config.json (read here)
  llama2   meta-llama/Llama-2-7b-chat-hf's chat_template (below)
  mistral  mistralai/Mistral-7B-Instruct-v0.2's original chat_template, the
           same as Mixtral-8x7B-Instruct-v0.1's (below). It refuses a system
           message; as Mistral's later templates do, the system prompt is
           written before the first user message, a blank line between.
  zephyr   HuggingFaceH4/zephyr-7b-beta's chat_template (below), also
           TinyLlama-1.1B-Chat's.
../shared holds no Llama-2, Mistral-Instruct or Zephyr tokenizer_config.json
(its mistral-7b-v0.1 is the base model, without a template), so those three
are written out here as their model repositories ship them.

The golden header changes only by re-running this script:

    /usr/bin/python3 scripts/render_chat_templates.py [--shared ../shared]

Needs python3-jinja2 (Debian). Not a goal: tools, generation without
add_generation_prompt.
"""

import argparse
import json
from pathlib import Path

from jinja2.sandbox import ImmutableSandboxedEnvironment

LLAMA2_CHAT = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}"
    "{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}"
    "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}"
    "{{ ' '  + content.strip() + ' ' + eos_token }}"
    "{% endif %}{% endfor %}"
)

MISTRAL_INSTRUCT = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}"
    "{% endif %}{% endfor %}"
)

ZEPHYR = (
    "{% for message in messages %}\n"
    "{% if message['role'] == 'user' %}\n"
    "{{ '<|user|>\n' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'system' %}\n"
    "{{ '<|system|>\n' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'assistant' %}\n"
    "{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n"
    "{% endif %}\n"
    "{% if loop.last and add_generation_prompt %}\n"
    "{{ '<|assistant|>' }}\n"
    "{% endif %}\n"
    "{% endfor %}"
)

# name, system ("" = none), earlier (role, text) messages, the current user message.
CONVERSATIONS = [
    ("single turn", "Be brief.", [], "Describe: Blue Mug"),
    (
        "follow-up with a system prompt",
        "Be brief.\n\nAnswer in English.",
        [("user", "What is Dune about?"), ("assistant", " A desert planet and its spice. ")],
        "Who wrote it?",
    ),
    (
        "two exchanges, no system prompt",
        "",
        [
            ("user", "Hi"),
            ("assistant", "Hello! Ask me about a product."),
            ("user", "O Alquimista"),
            ("assistant", "Um romance de Paulo Coelho."),
        ],
        "  e quem escreveu?",
    ),
    (
        "an earlier answer that thought first",
        "",
        [("user", "What is Dune about?"), ("assistant", "<think>\nsand\n</think>\n\nA desert planet.")],
        "Who wrote it?",
    ),
]


def environment():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)

    def raise_exception(message):
        raise ValueError(message)

    env.globals["raise_exception"] = raise_exception
    return env


def messages_of(system, history, user, system_in_first_user=False):
    messages = [{"role": role, "content": text} for role, text in history]
    messages.append({"role": "user", "content": user})
    if system and system_in_first_user:
        messages[0]["content"] = system + "\n\n" + messages[0]["content"]
    elif system:
        messages.insert(0, {"role": "system", "content": system})
    return messages


def render(template, bos, eos, messages):
    text = environment().from_string(template).render(
        messages=messages, bos_token=bos, eos_token=eos, add_generation_prompt=True
    )
    # vitrine's rendering starts after BOS: the tokenizer adds it.
    return text[len(bos):] if bos and text.startswith(bos) else text


def shared_template(shared, name):
    config = json.loads((shared / "tokenizers" / name / "tokenizer_config.json").read_text())
    return config["chat_template"]


def c_string(text):
    assert text.isascii(), text
    out = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return '"' + out + '"'


def families(shared):
    # family enum, template source, template, bos, eos, system written into the first user message
    return [
        ("kLlama3", "../shared/tokenizers/llama3", shared_template(shared, "llama3"),
         "<|begin_of_text|>", "<|end_of_text|>", False),
        ("kChatMl", "../shared/tokenizers/qwen3", shared_template(shared, "qwen3"),
         "", "<|im_end|>", False),
        ("kLlama2", "meta-llama/Llama-2-7b-chat-hf", LLAMA2_CHAT, "<s>", "</s>", False),
        ("kMistral", "mistralai/Mistral-7B-Instruct-v0.2", MISTRAL_INSTRUCT, "<s>", "</s>", True),
        ("kZephyr", "HuggingFaceH4/zephyr-7b-beta", ZEPHYR, "", "</s>", False),
    ]


def header(shared):
    lines = [
        "// Generated by scripts/render_chat_templates.py from the real chat templates",
        "// (see the script for their sources); change it only by re-running the script.",
        "// clang-format off",
        "#pragma once",
        "",
        "#include <vector>",
        "",
        '#include "models/tokenizer/chat_format.h"',
        "",
        "namespace vitrine::models::golden {",
        "",
        "struct Conversation {",
        "  const char* name;",
        "  ChatTurn turn;",
        "};",
        "",
        "struct Rendering {",
        "  ChatFamily family;",
        "  const char* conversation;  // Conversation::name",
        "  const char* template_source;",
        "  const char* text;  // the template's rendering, after BOS",
        "};",
        "",
        "inline std::vector<Conversation> conversations() {",
        "  using enum ChatRole;",
        "  return {",
    ]
    for name, system, history, user in CONVERSATIONS:
        messages = ", ".join(
            "{%s, %s}" % ("kUser" if role == "user" else "kAssistant", c_string(text))
            for role, text in history
        )
        lines.append(
            "      {%s, {%s, %s, {%s}}}," % (c_string(name), c_string(system), c_string(user), messages)
        )
    lines += ["  };", "}", "", "inline std::vector<Rendering> renderings() {", "  return {"]
    for family, source, template, bos, eos, system_in_user in families(shared):
        for name, system, history, user in CONVERSATIONS:
            text = render(template, bos, eos, messages_of(system, history, user, system_in_user))
            lines.append(
                "      {ChatFamily::%s, %s, %s,\n       %s}," % (family, c_string(name), c_string(source), c_string(text))
            )
    lines += ["  };", "}", "", "}  // namespace vitrine::models::golden", ""]
    return "\n".join(lines)


def main():
    root = Path(__file__).resolve().parent.parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=root.parent / "shared")
    parser.add_argument(
        "--out", type=Path, default=root / "tests" / "models" / "tokenizer" / "chat_template_golden.h"
    )
    args = parser.parse_args()
    args.out.write_text(header(args.shared))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

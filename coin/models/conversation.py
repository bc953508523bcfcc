"""How a LLaVA-style backbone writes a conversation: LLaVA's ``SeparatorStyle.TWO`` templates.

CoIN trained and evaluated LLaVA-1.5 with LLaVA's ``vicuna_v1`` conversation::

    {system} USER: <image>\\n{q1} ASSISTANT: {a1}</s>USER: {q2} ASSISTANT: {a2}</s>

(the system line, then each user turn followed by a space and each assistant turn by ``</s>``;
the generation prompt ends at ``ASSISTANT:``). A model answers best in the format it was
tuned with, so the ``llava`` and ``llava-pretrain`` backbones use it; the built-in tiny model
was pretrained without a system line (``plain``) and keeps that, so its results do not move.

``vicuna_v1`` is tokenised whole, as LLaVA's ``preprocess_v1`` does (``coin.models.llava.encode``:
the same ids and labels, the assistant turns and their ``</s>``); ``plain`` keeps the tiny
model's piecewise tokenisation (prompt, `` {answer}`` + EOS, next user turn, joined), so its
results do not move. Either way generation sees exactly the training prompt.
``VICUNA_V1_TEMPLATE`` is the same format as a chat template, for processors that format text
themselves (``model.name: hf`` on an assembled LLaVA folder).
"""

from __future__ import annotations

from dataclasses import dataclass

from coin.registry import Registry

# LLaVA's llava/conversation.py, conv_vicuna_v1.system (it says "user"; "human" is vicuna_v0's wording)
VICUNA_V1_SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. "
                    "The assistant gives helpful, detailed, and polite answers to the user's questions.")


@dataclass(frozen=True)
class Conversation:
    """A ``SeparatorStyle.TWO`` format: ``{system}{sep}USER: {q}{sep}ASSISTANT: {a}</s>...``.

    The end of an assistant turn is the tokenizer's EOS token (``</s>``), appended as an id, so
    a tokenizer that would split the string ``"</s>"`` cannot break it.
    """

    name: str
    system: str = ""  # empty: no system line (and no separator before the first turn)
    user: str = "USER"
    assistant: str = "ASSISTANT"
    sep: str = " "  # after the system line and after each user turn
    # tokenised as one string, as LLaVA's preprocess_v1 (coin.models.llava.encode); False: prompt and
    # answers apart (the tiny model's, which its pretrained base and CoIN-Synth results depend on)
    whole: bool = False

    def first_prompt(self, text: str) -> str:
        """The opening of a conversation up to the generation prompt (``text`` holds the image)."""
        head = self.system + self.sep if self.system else ""
        return head + self.turn(text)

    def turn(self, text: str) -> str:
        """A later user turn, up to the generation prompt."""
        return f"{self.user}: {text}{self.sep}{self.assistant}:"

    @staticmethod
    def answer(text: str) -> str:
        """An assistant turn's text after the generation prompt (the EOS id follows it)."""
        return " " + text

    def render(self, turns: list[tuple[str, str]], eos: str = "</s>") -> str:
        """The whole conversation as one string (for documentation, logs and snapshot tests)."""
        out = ""
        for k, (question, answer) in enumerate(turns):
            out += (self.first_prompt(question) if k == 0 else self.turn(question)) + self.answer(answer) + eos
        return out


CONVERSATIONS: Registry[Conversation] = Registry("conversation")
CONVERSATIONS.register(Conversation(name="vicuna_v1", system=VICUNA_V1_SYSTEM, whole=True))
CONVERSATIONS.register(Conversation(name="plain"))  # the tiny model's: vicuna_v1 without the system line

# vicuna_v1 as a Jinja chat template (an explicit system message replaces the default line)
VICUNA_V1_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}" + VICUNA_V1_SYSTEM + " {% endif %}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}"
    "{% for c in message['content'] %}{{ c['text'] }}{% endfor %} "
    "{% elif message['role'] == 'user' %}USER: "
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<image>\n{% else %}{{ c['text'] }}{% endif %}"
    "{% endfor %} "
    "{% else %}ASSISTANT: {% for c in message['content'] %}{{ c['text'] }}{% endfor %}</s>{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)

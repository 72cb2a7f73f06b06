"""The short chat requests the local engines' tests send (transformers, llama.cpp,
OpenVINO GenAI): one terse system prompt shared by every request, so batches exercise
prefix reuse, and six one-line questions."""

from __future__ import annotations

from promptopt.types import GenerationRequest, Message

SYSTEM = Message(
    "system",
    "You are a terse assistant. Answer every question in one short sentence. "
    "Never use lists. Be polite and accurate.",
)
QUESTIONS = (
    "What is the capital of France?",
    "Name a primary color.",
    "What is two plus two?",
    "Who wrote Romeo and Juliet?",
    "What is the boiling point of water in Celsius?",
    "Which planet is closest to the sun?",
)


def ask(question: str, *, max_tokens: int = 12, **kwargs: object) -> GenerationRequest:
    """``question`` after :data:`SYSTEM`, greedy unless ``kwargs`` say otherwise."""
    return GenerationRequest((SYSTEM, Message("user", question)), max_tokens=max_tokens, **kwargs)  # type: ignore[arg-type]

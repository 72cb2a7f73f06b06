"""The proposers' text handling: what a small chat model writes around a proposal is
cut away, and proposals about the shown examples rather than the task are dropped."""

from __future__ import annotations

import re

from promptopt.backends.fake import FakeBackend
from promptopt.proposers import Proposer, capped, clean_proposal, finished_part, mentions_examples
from promptopt.tasks import get_task

DARIA = (
    "Daria wants to go to a concert by her favorite band. She wants to buy tickets for her "
    "and for three of her friends. One ticket cost is $90. How much money does Daria need "
    "if she currently has only $189?"
)
IGGY = "Iggy is training for a marathon. On Monday, he runs 3 miles. His pace is 1 mile in 10 minutes."


def test_a_lead_in_line_ending_in_a_colon_is_dropped() -> None:
    text = (
        "Certainly! Below is a new instruction that should score higher, ensuring it is "
        "distinct from the previous examples:\n\nRead the problem twice, then solve it."
    )
    assert clean_proposal(text) == "Read the problem twice, then solve it."
    assert clean_proposal("Here is the instruction:\nSolve it carefully.") == "Solve it carefully."
    assert clean_proposal('Sure! "Work it out step by step."') == "Work it out step by step."


def test_a_lone_colon_line_is_kept_and_labels_are_stripped() -> None:
    assert clean_proposal("Solve the following problem:") == "Solve the following problem:"
    assert clean_proposal("Instruction: Add the numbers.\n\nThat should work.") == "Add the numbers."
    assert clean_proposal("Teacher's instruction: Add the numbers.") == "Add the numbers."
    assert clean_proposal("**Revised prompt:** Add the numbers.") == "Add the numbers."
    assert clean_proposal("New sentence: Add them.") == "Add them."
    assert clean_proposal("**Instruction**: Add them.") == "Add them."
    assert clean_proposal("Solve the problem: add the numbers.") == "Solve the problem: add the numbers."
    assert clean_proposal("Follow this instruction:") == "Follow this instruction:"
    assert clean_proposal("   ") is None
    assert clean_proposal("Write it as <INS>") is None
    # The meta-prompt's <INS> mark copied around the proposal (seen with qwen2.5-coder-1.5b)
    assert clean_proposal("<INS>Solve it in steps.</INS>\nThis differs from the others by ...") == (
        "Solve it in steps."
    )
    assert clean_proposal("<INS>\nSolve it in steps.\n</INS>") == "Solve it in steps."
    assert clean_proposal("<INS: Solve it in steps.\nThe score for this new instruction is 90.") == (
        "Solve it in steps."
    )
    assert clean_proposal("text: Solve it in steps.\nscore: 75") == "Solve it in steps."
    assert clean_proposal("<INS>\nQuestion: Ann has 3 pens. How many?\nOutput: 3\n</INS>") is None
    assert clean_proposal("---") is None and clean_proposal("<INS></INS>") is None
    assert clean_proposal("New instruction:\nThe score for this instruction is 90.") is None
    # ... and what must survive those rules
    assert clean_proposal("<instruction>Solve it in steps.</instruction>") == "Solve it in steps."
    assert clean_proposal("<Instructions> Solve it in steps.") == "Solve it in steps."
    for kept in (
        "<INSERT> is not a tag we use.",
        "<INStep> Solve it.",
        "Solve the problem step by step.\nAccuracy matters: double-check all 3 steps.",
        "Read the question.\nScore each option from 1 to 10 and pick the best.",
    ):
        assert clean_proposal(kept) == kept, kept
    # an answer format, not a copied example
    answer_format = "Format your reply as:\nQuestion: restate the problem\nAnswer: the final number only"
    assert clean_proposal(answer_format) == answer_format


def test_a_colon_line_about_the_task_stays_with_what_follows_it() -> None:
    listed = "Solve problems in a way that:\n1. names each quantity\n2. checks the units"
    assert clean_proposal(listed) == listed
    assert clean_proposal("Solve problems in a way that:\n\n1. names each quantity") == (
        "Solve problems in a way that:\n1. names each quantity"
    )
    # the whole list, blank lines between its items or not
    assert clean_proposal("Solve it in a way that:\n1. names\n\n2. checks\n\nThat should help.") == (
        "Solve it in a way that:\n1. names\n2. checks"
    )
    # chatter before a list still goes, and so does any header before plain prose
    assert clean_proposal("Here is an improved version:\n1. Read.\n2. Solve.") == "1. Read.\n2. Solve."
    for header in (
        "Sure, a better prompt would be:",
        "Opening sentence:",
        "Rewritten sentence:",
        "Paraphrased:",
        "Updated text:",
        "Proposal:",
        "Suggestion:",
        "Alternative:",
        "Absolutely! Try this:",
        "Great, try this one:",
        "I would suggest the following:",
        "Output:",
    ):
        assert clean_proposal(f"{header}\n\nLet's work it out.") == "Let's work it out.", header
        assert clean_proposal(f"{header}\nLet's work it out.") == "Let's work it out.", header


def test_a_long_proposal_is_capped_where_a_sentence_or_line_ends() -> None:
    rules = "\n".join(
        f"{n}. Check the step number {n} of the working carefully before going on." for n in range(1, 9)
    )
    text = clean_proposal(rules)
    assert text is not None and len(text) <= 400 and text.endswith("going on.")
    assert text == "\n".join(rules.splitlines()[: len(text.splitlines())])  # whole lines only
    one_line = "Add the numbers. " * 30
    assert capped(one_line, 100) == ("Add the numbers. " * 5).strip()
    # a first sentence longer than the cap ends at a word's end, not inside a word
    assert capped("word " * 100, 22) == "word word word word"
    assert capped("short enough", 400) == "short enough"


def test_the_finished_part_of_a_cut_text() -> None:
    assert finished_part("1. Read it.\n2. Then wri") == "1. Read it."
    assert finished_part("Read it. Then wri") == "Read it."
    assert finished_part("Read it (all of it).") == "Read it (all of it)."
    assert finished_part("Follow the steps below:") == ""
    assert finished_part("Then wri") == ""


def test_proposals_naming_an_example_are_recognized() -> None:
    shown = [DARIA, IGGY]
    # names used inside a sentence, and numbers, of the shown examples
    assert mentions_examples("Calculate how much money Daria still needs.", shown)
    assert mentions_examples("Find the total hours Iggy spends running.", shown)
    assert mentions_examples("Work out the cost of tickets at $90 each.", shown)
    assert mentions_examples("Convert 10 minutes per mile into hours.", shown)
    # general instructions pass, including capitalized words that open sentences there
    assert not mentions_examples("Solve the math word problem.", shown)
    assert not mentions_examples("How much is left? One step at a time, compute it.", shown)


def test_a_proposal_that_quotes_one_shown_item_is_about_it_but_the_tasks_shared_wording_is_not() -> None:
    stem = "Which of the following is a humorous edit of this artist or movie name"
    shown = [
        "I have a mouse, four snails, a chicken, a cat, three pigs, and a dog. How many animals do I have?",
        "I have a yam, a carrot, and two heads of broccoli. How many vegetables do I have?",
    ]
    # the 0.5B's pool instruction in the suite: a shown item's question, without a digit or a name
    assert mentions_examples("I have a mouse, four snails, a chicken, a cat, three pigs. How many?", shown)
    assert not mentions_examples("Count the objects of the kind the question asks about.", shown)
    named = [f"{stem}: 'rain man'?", f"{stem}: 'the beatles'?"]
    assert not mentions_examples(f"{stem}? Pick the funny one.", named)  # every item has it
    # the shared wording run on into one item's own words is a quote of that item
    assert mentions_examples("Which is a humorous edit of this artist or movie name: 'rain man'?", named)

    assert not mentions_examples("She should show her work and state the final number.", shown)
    assert not mentions_examples("Count the miles, then give 1 number.", [DARIA])


def _quoting_its_demos(request) -> str:
    """A proposal that quotes a number of the demos shown in ``request``."""
    demos = request.messages[-1].content.split("Write the instruction")[0]
    return f"Compute {re.findall(r'[0-9]+', demos.split('Input:', 1)[1])[0]} plus one."


def test_the_proposer_drops_proposals_about_the_demos_and_counts_them() -> None:
    task = get_task("gsm-symbolic")

    def reply(request):  # the first proposal is general; the others quote a number of their demos
        return "Add the numbers." if request.sample_index == 0 else _quoting_its_demos(request)

    proposer = Proposer(FakeBackend(reply), task, seed=0)
    texts = proposer.from_demos(3)
    # the two dropped proposals are replaced by fresh draws, up to twice the calls asked for
    assert texts == ["Add the numbers."]
    assert proposer.rejected == 5
    assert proposer.calls == 6


def test_dropped_proposals_are_redrawn_until_enough_are_kept() -> None:
    task = get_task("gsm-symbolic")
    replies = iter(["Compute 1 plus 1.", "Add them.", "Add them.", "Multiply them.", "Subtract."])

    def reply(request):  # the first quotes a number of its demos, the third repeats the second
        text = next(replies)
        return _quoting_its_demos(request) if text.startswith("Compute") else text

    proposer = Proposer(FakeBackend(reply), task, seed=0)
    assert proposer.from_demos(2) == ["Add them.", "Multiply them."]
    assert proposer.calls == 4 and proposer.rejected == 1

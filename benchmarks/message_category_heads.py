"""An experiment, not a product option: `default`'s category heads fitted on harmful rows only.

    python benchmarks/message_category_heads.py OUTPUT_DIR      # about 2 minutes with 2 cores
    python benchmarks/message_categories.py --model shipped=default experiment=OUTPUT_DIR

Why: on single messages the shipped category heads rarely reach their cut-offs (most message rows are safe, and
the harmful message sources teach the flag head only), so a flagged message's category is mostly the nearest one
(``benchmarks/results/message_categories.md``). Here each category head learns P(category | unsafe, text): the card's
own ``train`` command (``default``'s, without ``--cv-folds``) is parsed by the CLI, its training set built, and every
safe row's categories marked unknown before fitting. The flag head is the same as the shipped one. Its category
scores are conditional on harm, not probabilities of the text: see docs/quality.md for what was measured and why
it is not shipped.
"""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path

from rebuild_shipped import MODELS, documented_arguments

from lite_moderation import cli, save
from lite_moderation.sources import build_training_set
from lite_moderation.training import train


def main() -> None:
    output = Path(sys.argv[1])
    card = json.loads((MODELS / "default" / "model.json").read_text())["card"]
    args = documented_arguments(card, output)
    if "--cv-folds" in args:
        del args[args.index("--cv-folds"):args.index("--cv-folds") + 2]
    context = cli.main.commands["train"].make_context("train", [*args[1:], "--jobs", "2"])
    params = context.params
    training_set = build_training_set(params["sources"], params["shapes"], seed=params["seed"])
    training_set.vocabulary_from = params["vocabulary_from"]
    training_set.label_mask = training_set.label_mask.copy()
    training_set.label_mask[:, :-1] &= training_set.Y[:, -1:]  # categories learn from unsafe rows only
    named = inspect.signature(cli.main.commands["train"].callback).parameters  # train's own; the rest: **recipe
    recipe = {k: v for k, v in params.items() if k not in named}
    with context:  # the recipe options the command gave, as `train` reads them
        estimator = cli._estimator_from_options(recipe)
    model, new_card = train(training_set, estimator, command="experiment: benchmarks/message_category_heads.py",
                            progress=True)
    save(model, output, new_card)
    print(f"saved {output}", file=sys.stderr)


if __name__ == "__main__":
    main()

"""Othello world model: the move generator against a plain reference, and the quick run of the
reproduction (through the real runner, on a scratch copy) showing the phenomenon: the
mine/theirs probe beats the black/white probe, and probe-direction edits change the
predicted legal moves the right way far more often than random edits."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import quick_through_runner

from mikb.data.othello import initial_board, legal_moves, legal_moves_slow, play_slow, random_games

CIRCUIT, MODEL = "othello-world-model", "othello-6x6-3l"


def test_move_generator_matches_reference() -> None:
    for n in (4, 6):
        games = random_games(60, n, seed=3)
        for g in range(60):
            board, player = initial_board(n), 1
            for t in range(int(games.lengths[g])):
                move = int(games.moves[g, t])
                assert move in legal_moves_slow(board, player)
                board, player = play_slow(board, player, move), -player
                assert (board.reshape(-1) == games.boards[g, t]).all()
                assert set(np.flatnonzero(games.legal[g, t])) == legal_moves_slow(board, player)
            assert not games.legal[g, int(games.lengths[g]) - 1].any()  # stops at the first pass
    # A hand-checked position: black's four opening moves on 6x6.
    opening = legal_moves(initial_board(6)[None], np.array([1]))[0]
    assert set(np.flatnonzero(opening)) == {8, 13, 22, 27}


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> dict:
    return quick_through_runner(tmp_path_factory.mktemp("othello"), CIRCUIT, MODEL)


@pytest.mark.slow
def test_quick_run_learns_moves_and_a_relative_board(quick: dict) -> None:
    m = quick["metrics"]
    assert m["bridge_lean_max_abs_diff"] < 1e-4
    assert m["top1_legal_move_acc"] > m["chance_top1_legal"] + 0.1
    assert m["probe_acc_relative_occupied_best"] > m["probe_acc_colour_occupied_best"] + 0.05
    assert m["probe_acc_relative_occupied_best"] > m["probe_acc_untrained_relative_occupied_best"] + 0.05


@pytest.mark.slow
def test_quick_run_probe_edits_move_the_legal_moves(quick: dict) -> None:
    m = quick["metrics"]
    # Squares whose legality the flip changes move the right way far more often than under
    # a random edit of the same size (the exact top-k match needs a better model than quick).
    assert m["edit_onward_direction_acc"] > 0.55
    assert m["edit_onward_direction_acc"] > m["edit_onward_random_direction_acc"] + 0.1
    assert len(quick["figures"]) == 3

"""Othello on a small square board: a vectorised move generator and seeded random games.

Standard rules on an ``n x n`` board (``n`` even, at least 4): black moves first; the four
centre squares start filled (white on the main diagonal, black on the other); a move places
a disc on an empty square that brackets at least one straight line (any of the 8
directions) of opponent discs with a disc of the mover, and every bracketed line flips.

Passes are not encoded. A game is played with uniformly random legal moves and **stops at
the first position in which the player to move has no legal move** (a pass or the end of
the game), so in every recorded position before the last the player to move has at least
one legal move and the players strictly alternate: black plays moves 0, 2, 4, ... This keeps
"the player to move" a function of the position alone, which is what the mine/theirs board
encoding needs.

Board cells hold ``1`` (black), ``-1`` (white) or ``0`` (empty), squares numbered row-major
``0 .. n*n-1``. Everything is numpy and batched over games, so tens of thousands of games
take about a second; :func:`legal_moves_slow` is a plain per-square reference used by the
tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DIRECTIONS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))
BLACK, WHITE, EMPTY = 1, -1, 0


def initial_board(n: int) -> np.ndarray:
    """The start position as an ``[n, n]`` int8 array."""
    if n < 4 or n % 2:
        raise ValueError(f"board size must be even and at least 4, got {n}")
    b = np.zeros((n, n), dtype=np.int8)
    h = n // 2
    b[h - 1, h - 1] = b[h, h] = WHITE
    b[h - 1, h] = b[h, h - 1] = BLACK
    return b


def _shift(padded: np.ndarray, n: int, dy: int, dx: int, k: int) -> np.ndarray:
    """``out[:, y, x] = board[:, y + k*dy, x + k*dx]`` (0 off the board), from a board padded
    by ``n`` on every side."""
    y0, x0 = n + k * dy, n + k * dx
    return padded[:, y0 : y0 + n, x0 : x0 + n]


def legal_moves(boards: np.ndarray, player: np.ndarray) -> np.ndarray:
    """Legal-move masks ``[B, n, n]`` for ``boards [B, n, n]`` and movers ``player [B]``
    (``1`` black, ``-1`` white)."""
    bsz, n, _ = boards.shape
    rel = boards * player.reshape(-1, 1, 1).astype(np.int8)  # +1 mover, -1 opponent
    padded = np.zeros((bsz, 3 * n, 3 * n), dtype=np.int8)
    padded[:, n : 2 * n, n : 2 * n] = rel
    legal = np.zeros((bsz, n, n), dtype=bool)
    for dy, dx in DIRECTIONS:
        run = np.ones((bsz, n, n), dtype=bool)  # every cell so far along the ray is the opponent's
        for k in range(1, n):
            cell = _shift(padded, n, dy, dx, k)
            if k >= 2:
                legal |= run & (cell == 1)
            run &= cell == -1
            if not run.any():
                break
    return legal & (boards == EMPTY)


def play(boards: np.ndarray, player: np.ndarray, moves: np.ndarray) -> np.ndarray:
    """The boards after each mover plays square ``moves [B]`` (assumed legal), flips done."""
    bsz, n, _ = boards.shape
    out = boards.copy()
    ys, xs = np.divmod(moves.astype(np.int64), n)
    rows = np.arange(bsz)
    p = player.astype(np.int8)
    out[rows, ys, xs] = p
    for dy, dx in DIRECTIONS:
        run = np.ones(bsz, dtype=bool)
        closed = np.zeros(bsz, dtype=bool)
        length = np.zeros(bsz, dtype=np.int64)
        for k in range(1, n):
            y, x = ys + k * dy, xs + k * dx
            inside = (y >= 0) & (y < n) & (x >= 0) & (x < n)
            cell = np.where(inside, boards[rows, np.clip(y, 0, n - 1), np.clip(x, 0, n - 1)], 0) * p
            closed |= run & (cell == 1) & (k >= 2)
            run &= cell == -1
            length += run
        for k in range(1, n - 1):
            hit = closed & (length >= k)
            if not hit.any():
                break
            out[rows[hit], ys[hit] + k * dy, xs[hit] + k * dx] = p[hit]
    return out


@dataclass
class Games:
    """A batch of random games, padded to ``max_len`` moves.

    ``moves [G, T]`` square ids (``-1`` after the game's end), ``lengths [G]``,
    ``boards [G, T, n*n]`` the board *after* move ``t`` (int8, black 1 / white -1),
    ``legal [G, T, n*n]`` the legal moves of the player to move after move ``t``
    (empty for padding and for the final position, where that player has none).
    """

    n: int
    moves: np.ndarray
    lengths: np.ndarray
    boards: np.ndarray
    legal: np.ndarray

    @property
    def mover_after(self) -> np.ndarray:
        """``[T]``: who moves after move ``t`` (white after black's move 0, and so on)."""
        t = np.arange(self.moves.shape[1])
        return np.where(t % 2 == 0, WHITE, BLACK).astype(np.int8)

    def relative_boards(self) -> np.ndarray:
        """Boards as seen by the player to move: ``1`` mine, ``-1`` theirs, ``0`` empty."""
        return self.boards * self.mover_after.reshape(1, -1, 1)


def random_games(num: int, n: int, seed: int) -> Games:
    """``num`` games of uniformly random legal moves, each stopped at its first pass."""
    rng = np.random.default_rng(seed)
    max_len = n * n - 4
    boards = np.repeat(initial_board(n)[None], num, axis=0)
    player = np.full(num, BLACK, dtype=np.int8)
    alive = np.ones(num, dtype=bool)
    moves = np.full((num, max_len), -1, dtype=np.int64)
    after = np.zeros((num, max_len, n * n), dtype=np.int8)
    legal_after = np.zeros((num, max_len, n * n), dtype=bool)
    lengths = np.zeros(num, dtype=np.int64)
    legal = legal_moves(boards, player).reshape(num, -1)
    for t in range(max_len):
        alive &= legal.any(axis=1)
        if not alive.any():
            break
        # Uniform choice among legal squares: argmax of random keys restricted to them.
        keys = rng.random((num, n * n))
        choice = np.where(legal, keys, -1.0).argmax(axis=1)
        new = play(boards, player, choice)
        boards = np.where(alive[:, None, None], new, boards)
        moves[alive, t] = choice[alive]
        lengths += alive
        after[:, t] = np.where(alive[:, None], boards.reshape(num, -1), 0)
        player = np.where(alive, -player, player).astype(np.int8)
        legal = legal_moves(boards, player).reshape(num, -1) & alive[:, None]
        legal_after[:, t] = legal
    return Games(n=n, moves=moves, lengths=lengths, boards=after, legal=legal_after)


def legal_moves_slow(board: np.ndarray, player: int) -> set[int]:
    """Reference move generator for one ``[n, n]`` board (plain loops, for tests)."""
    n = board.shape[0]
    out = set()
    for y in range(n):
        for x in range(n):
            if board[y, x] != EMPTY:
                continue
            for dy, dx in DIRECTIONS:
                yy, xx, seen = y + dy, x + dx, 0
                while 0 <= yy < n and 0 <= xx < n and board[yy, xx] == -player:
                    yy, xx, seen = yy + dy, xx + dx, seen + 1
                if seen and 0 <= yy < n and 0 <= xx < n and board[yy, xx] == player:
                    out.add(y * n + x)
                    break
    return out


def play_slow(board: np.ndarray, player: int, move: int) -> np.ndarray:
    """Reference: the board after ``player`` plays ``move`` (plain loops, for tests)."""
    n = board.shape[0]
    out = board.copy()
    y, x = divmod(move, n)
    out[y, x] = player
    for dy, dx in DIRECTIONS:
        yy, xx, line = y + dy, x + dx, []
        while 0 <= yy < n and 0 <= xx < n and board[yy, xx] == -player:
            line.append((yy, xx))
            yy, xx = yy + dy, xx + dx
        if line and 0 <= yy < n and 0 <= xx < n and board[yy, xx] == player:
            for a, b in line:
                out[a, b] = player
    return out

"""An incremental Okapi BM25 index with an inverted list per word.

It scores exactly as ``rank_bm25.BM25Okapi`` (k1 = 1.5, b = 0.75, negative IDFs floored at
``0.25 * mean IDF``; the tests compare the two), but documents can be added one at a time, and a
query touches only the documents that share a word with it: rank-bm25 rebuilds its index for a
new document and scores every document for every query word, which is too slow for a graph that
grows while agents read it (10^5 problems).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class BM25Index:
    """Documents (token lists) numbered 0, 1, 2... in the order they were added.

    >>> index = BM25Index()
    >>> for doc in (["compute", "2", "plus", "2"], ["weather", "in", "oslo"], ["compute", "7"]):
    ...     _ = index.add(doc)
    >>> [int(i) for i in index.top_k(["compute", "2"], 2)[0]]
    [0, 2]
    """

    k1 = 1.5
    b = 0.75
    epsilon = 0.25

    def __init__(self) -> None:
        self._lengths: list[int] = []
        self._total_length = 0
        # word -> (document numbers, term frequencies), appended as documents arrive
        self._postings: dict[str, tuple[list[int], list[int]]] = {}
        self._arrays: dict[str, tuple[IntArray, FloatArray]] = {}
        self._idf_key = (-1, -1)
        self._idf_floor = 0.0
        self._length_array: FloatArray = np.zeros(0, dtype=np.float64)

    def __len__(self) -> int:
        return len(self._lengths)

    def add(self, tokens: Sequence[str]) -> int:
        """Add a document; returns its number."""
        number = len(self._lengths)
        for word, count in Counter(tokens).items():
            docs, counts = self._postings.setdefault(word, ([], []))
            docs.append(number)
            counts.append(count)
            self._arrays.pop(word, None)
        self._lengths.append(len(tokens))
        self._total_length += len(tokens)
        return number

    def _idf(self, word: str) -> float:
        """rank-bm25's IDF: ``log((N - n + 0.5) / (n + 0.5))``, a negative one replaced by
        ``epsilon`` times the mean IDF over the whole vocabulary."""
        n_docs = len(self._lengths)
        key = (n_docs, len(self._postings))
        if key != self._idf_key:  # the mean IDF changes with every new document
            freqs = np.fromiter((len(d) for d, _ in self._postings.values()), dtype=np.float64)
            idfs = np.log(n_docs - freqs + 0.5) - np.log(freqs + 0.5)
            self._idf_floor = self.epsilon * float(idfs.mean()) if len(idfs) else 0.0
            self._idf_key = key
        freq = len(self._postings[word][0])
        idf = math.log(n_docs - freq + 0.5) - math.log(freq + 0.5)
        return self._idf_floor if idf < 0 else idf

    def _posting_arrays(self, word: str) -> tuple[IntArray, FloatArray]:
        arrays = self._arrays.get(word)
        if arrays is None:
            docs, counts = self._postings[word]
            arrays = (np.asarray(docs, dtype=np.int64), np.asarray(counts, dtype=np.float64))
            self._arrays[word] = arrays
        return arrays

    def scores(self, query: Sequence[str]) -> tuple[IntArray, FloatArray]:
        """The documents sharing at least one word with ``query`` and their BM25 scores (a
        repeated query word counts each time, as in rank-bm25)."""
        words = [w for w in query if w in self._postings]
        if not words:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
        if len(self._length_array) != len(self._lengths):
            self._length_array = np.asarray(self._lengths, dtype=np.float64)
        lengths = self._length_array
        norm = self.k1 * (1 - self.b + self.b * lengths / (self._total_length / len(lengths)))
        total = np.zeros(len(lengths), dtype=np.float64)
        hit = np.zeros(len(lengths), dtype=bool)
        for word in words:
            docs, tf = self._posting_arrays(word)
            total[docs] += self._idf(word) * (tf * (self.k1 + 1) / (tf + norm[docs]))
            hit[docs] = True
        candidates = np.flatnonzero(hit)
        return candidates, total[candidates]

    def top_k(
        self, query: Sequence[str], k: int, allowed: npt.NDArray[np.bool_] | None = None
    ) -> tuple[IntArray, FloatArray]:
        """The ``k`` best documents for ``query`` (highest score first, ties to the newest),
        among those ``allowed`` marks (a boolean array over document numbers, when given)."""
        docs, scores = self.scores(query)
        if allowed is not None and len(docs):
            keep = allowed[docs]
            docs, scores = docs[keep], scores[keep]
        if k < 1 or not len(docs):
            return docs[:0], scores[:0]
        if len(docs) > k:  # only the scores from the k-th best up need sorting
            threshold = np.partition(scores, len(scores) - k)[len(scores) - k]
            keep = scores >= threshold
            docs, scores = docs[keep], scores[keep]
        order = np.lexsort((-docs, -scores))[:k]
        return docs[order], scores[order]

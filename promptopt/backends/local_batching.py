"""The local backend's running batch: plan groups by shared prefix, prefill, decode step
by step, let finished rows leave and waiting rows join (see :mod:`promptopt.backends.local`)."""

from __future__ import annotations

import functools
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from promptopt.backends.base import OnResults, admit_request, find_stop
from promptopt.backends.json_grammar import JsonMode
from promptopt.backends.local_kv import (
    _HEADROOM,
    _group_by_prefix,
    _Loaded,
    _make_buffer_layer_class,
    _Prefix,
    _Row,
    _with_capacity,
)
from promptopt.backends.local_torch import _import_torch
from promptopt.backends.sampling import stable_seed
from promptopt.types import Completion, GenerationRequest


class RunningBatch:
    """The generation half of :class:`~promptopt.backends.local.TransformersBackend`."""

    batch_size: int
    prefix_reuse: bool
    min_prefix_tokens: int
    prefix_cache_entries: int
    compact_fraction: float
    stats: dict[str, float]
    _loaded: _Loaded | None
    _prefixes: OrderedDict[tuple[int, ...], _Prefix]
    _lock: threading.Lock
    _rows_finished: Callable[[list[_Row]], None] | None
    _json: JsonMode

    if TYPE_CHECKING:  # defined by TransformersBackend

        def load(self) -> None: ...

        def _render(self, loaded: _Loaded, request: GenerationRequest) -> list[int]: ...

        def _score_labels(self, requests: Sequence[GenerationRequest]) -> list[Completion]: ...

    # ----------------------------------------------------------------- generation

    def _generate_each(
        self, requests: Sequence[GenerationRequest], on_results: OnResults | None
    ) -> list[Completion]:
        """Reports the rows of the running batch that each decoding step ends."""
        if not requests:
            return []
        if any(r.score_labels for r in requests):
            from promptopt.backends.scoring import split_scoring

            return split_scoring(requests, on_results, self._generate_each, self._score_labels)
        self.load()
        assert self._loaded is not None
        loaded = self._loaded
        torch = _import_torch()
        results: list[Completion | None] = [None] * len(requests)
        rows: list[_Row] = []
        invalid: list[tuple[int, Completion]] = []
        render = functools.partial(self._render, loaded)
        for index, request in enumerate(requests):
            prompt, matcher, error = admit_request(
                request, render, loaded.max_positions, "model's context of {} tokens", self._json, loaded
            )
            if error is not None:
                failed = results[index] = Completion(text="", error=error, finish_reason="error")
                invalid.append((index, failed))
                continue
            row = _Row(index, request, prompt, prompt, 0.0)
            row.json = matcher
            rows.append(row)
        if on_results is not None and invalid:
            on_results(invalid)

        def finished(ended: list[_Row], failure: str | None = None) -> None:
            report: list[tuple[int, Completion]] = []
            for row in ended:
                if results[row.index] is not None:
                    continue
                if failure is not None:
                    done = Completion(
                        text="", error=failure, finish_reason="error", tokens_in=len(row.prompt)
                    )
                else:
                    done = Completion(
                        text=row.text,
                        tokens_in=len(row.prompt),
                        tokens_out=len(row.generated),
                        finish_reason=row.finish or "length",
                        latency_s=(row.ended or time.perf_counter()) - row.started,
                    )
                results[row.index] = done
                report.append((row.index, done))
            if on_results is not None and report:
                on_results(report)

        with self._lock, torch.inference_mode():
            self._rows_finished = finished
            try:
                for prefix, members in self._plan(loaded, rows):
                    try:
                        self._run_group(loaded, prefix, members)
                    except (RuntimeError, MemoryError) as exc:
                        unfinished = [row for row in members if row.finish is None]
                        for row in unfinished:
                            row.finish = "error"
                        finished(unfinished, f"generation failed: {type(exc).__name__}: {exc}")
                    finished(members)
            finally:
                self._rows_finished = None
        return [r if r is not None else Completion(text="", error="not generated") for r in results]

    # ----------------------------------------------------------------- planning

    def _plan(self, loaded: _Loaded, rows: list[_Row]) -> list[tuple[_Prefix | None, list[_Row]]]:
        """Assign each row a shared prefix (cached, or new for a group) and bucket by it."""
        buckets: OrderedDict[tuple[int, ...] | None, list[_Row]] = OrderedDict()
        prefixes: dict[tuple[int, ...], _Prefix] = {}
        pending: list[_Row] = []
        for row in rows:
            hit = self._cached_prefix_for(row.prompt) if self.prefix_reuse else None
            if hit is not None:
                prefixes[hit.tokens] = hit
                buckets.setdefault(hit.tokens, []).append(row)
            else:
                pending.append(row)
        if self.prefix_reuse and len(pending) > 1:
            groups = _group_by_prefix([r.prompt for r in pending], self.min_prefix_tokens)
        else:
            groups = [([i], 0) for i in range(len(pending))]
        for members, shared in groups:
            key: tuple[int, ...] | None = None
            if shared >= self.min_prefix_tokens and len(members) > 1:
                key = tuple(pending[members[0]].prompt[:shared])
            for i in members:
                buckets.setdefault(key, []).append(pending[i])
        plan: list[tuple[_Prefix | None, list[_Row]]] = []
        for key, bucket in buckets.items():
            prefix = None
            if key is not None:
                prefix = prefixes.get(key) or self._compute_prefix(loaded, key)
                self.stats["prefix_tokens_reused"] += len(key) * len(bucket) - (
                    0 if key in prefixes else len(key)
                )
            for row in bucket:
                row.suffix = row.prompt[len(key) :] if key is not None else row.prompt
            bucket.sort(key=lambda r: len(r.suffix))
            plan.append((prefix, bucket))
        return plan

    def _cached_prefix_for(self, prompt: list[int]) -> _Prefix | None:
        best: _Prefix | None = None
        for tokens, prefix in self._prefixes.items():
            n = len(tokens)
            if n < len(prompt) and (best is None or n > len(best.tokens)) and tuple(prompt[:n]) == tokens:
                best = prefix
        if best is not None:
            self._prefixes.move_to_end(best.tokens)
        return best

    def _compute_prefix(self, loaded: _Loaded, tokens: tuple[int, ...]) -> _Prefix:
        torch = _import_torch()
        with torch.inference_mode():
            ids = torch.tensor([tokens], dtype=torch.long)
            out = loaded.model(
                input_ids=ids,
                position_ids=torch.arange(len(tokens)).unsqueeze(0),
                use_cache=True,
                logits_to_keep=1,
            )
        kv = [(layer.keys, layer.values) for layer in out.cache.layers]
        prefix = _Prefix(tokens, kv)
        self.stats["prefix_tokens_computed"] += len(tokens)
        if self.prefix_cache_entries > 0:
            self._prefixes[tokens] = prefix
            while len(self._prefixes) > self.prefix_cache_entries:
                self._prefixes.popitem(last=False)
        return prefix

    # ----------------------------------------------------------------- running batch

    def _run_group(self, loaded: _Loaded, prefix: _Prefix | None, queue: list[_Row]) -> None:
        """Decode every row of one prefix group as a running batch, refilled as rows finish.

        A finished row stays in the batch (computed, its tokens ignored) until
        ``compact_fraction`` of the batch has finished or new rows join: dropping it at once
        would copy the whole key/value buffer for every finished row, which with a long
        few-shot prefix cost several decode steps' time each."""
        torch = _import_torch()
        p = len(prefix.tokens) if prefix is not None else 0
        waiting = list(queue)
        running: list[_Row] = []
        layers: list[Any] | None = None  # BufferLayers: [batch, heads, p + pad + ..., dim]
        mask = torch.zeros(0, 0, dtype=torch.long)
        refill_at = max(1, self.batch_size // 4)
        while waiting or running:
            keep = [i for i, row in enumerate(running) if row.finish is None]
            free = self.batch_size - len(keep)
            refill = bool(waiting) and (not keep or free >= min(refill_at, len(waiting)))
            finished = len(running) - len(keep)
            if finished and (
                refill or not keep or finished >= max(1, int(len(running) * self.compact_fraction))
            ):
                if keep:
                    assert layers is not None
                    layers, mask = self._select(layers, mask, keep)
                    self.stats["compactions"] += 1
                else:
                    layers, mask = None, mask[:0]
                running = [running[i] for i in keep]
            if refill:
                joining, waiting = waiting[:free], waiting[free:]
                new_layers, new_mask, survivors = self._prefill(loaded, prefix, joining)
                if survivors:
                    layers, mask = self._merge(layers, mask, new_layers, new_mask, p)
                    running = running + survivors
                continue
            if running:
                layers, mask = self._decode_step(loaded, layers, mask, running)

    def _prefill(
        self, loaded: _Loaded, prefix: _Prefix | None, rows: list[_Row]
    ) -> tuple[list[Any], Any, list[_Row]]:
        torch = _import_torch()
        p = len(prefix.tokens) if prefix is not None else 0
        width = max(len(r.suffix) for r in rows)
        ids = torch.full((len(rows), width), loaded.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), p + width), dtype=torch.long)
        mask[:, :p] = 1
        now = time.perf_counter()
        for i, row in enumerate(rows):
            row.started = now
            n = len(row.suffix)
            ids[i, width - n :] = torch.tensor(row.suffix, dtype=torch.long)
            mask[i, p + width - n :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, p:]
        if prefix is not None:
            pairs = [(k.expand(len(rows), -1, -1, -1), v.expand(len(rows), -1, -1, -1)) for k, v in prefix.kv]
            layers = self._buffers(pairs, extra=width + _HEADROOM)
        else:
            layers = self._empty_buffers(loaded, len(rows), width + _HEADROOM)
        out = loaded.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            cache=self._as_cache(layers),
            use_cache=True,
            logits_to_keep=1,
        )
        self.stats["prefill_tokens"] += sum(len(r.suffix) for r in rows)
        self._choose(loaded, out.logits[:, -1, :], rows)
        keep = [i for i, row in enumerate(rows) if row.finish is None]
        if len(keep) < len(rows):
            layers, mask = self._select(layers, mask, keep)
        return layers, mask, [rows[i] for i in keep]

    @staticmethod
    def _as_cache(layers: list[Any]) -> Any:
        from transformers import DynamicCache

        cache = DynamicCache()
        cache.layers = layers
        return cache

    @staticmethod
    def _buffers(pairs: list[tuple[Any, Any]], extra: int) -> list[Any]:
        """BufferLayers holding copies of ``pairs`` with room for ``extra`` more columns."""
        layer_cls = _make_buffer_layer_class()
        layers = []
        for k, v in pairs:
            length = k.shape[2]
            kbuf = _with_capacity(k, length, length + extra)
            vbuf = _with_capacity(v, length, length + extra)
            layers.append(layer_cls(kbuf, vbuf, length))
        return layers

    @staticmethod
    def _empty_buffers(loaded: _Loaded, batch: int, capacity: int) -> list[Any]:
        torch = _import_torch()
        config = loaded.model.config.get_text_config(decoder=True)
        heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        dtype = next(loaded.model.parameters()).dtype
        layer_cls = _make_buffer_layer_class()
        return [
            layer_cls(
                torch.empty(batch, heads, capacity, head_dim, dtype=dtype),
                torch.empty(batch, heads, capacity, head_dim, dtype=dtype),
                0,
            )
            for _ in range(config.num_hidden_layers)
        ]

    @staticmethod
    def _select(layers: list[Any], mask: Any, keep: list[int]) -> tuple[list[Any], Any]:
        torch = _import_torch()
        index = torch.tensor(keep, dtype=torch.long)
        layer_cls = _make_buffer_layer_class()
        selected = [
            layer_cls(layer.kbuf.index_select(0, index), layer.vbuf.index_select(0, index), layer.length)
            for layer in layers
        ]
        return selected, mask.index_select(0, index)

    def _merge(
        self, layers: list[Any] | None, mask: Any, new_layers: list[Any], new_mask: Any, p: int
    ) -> tuple[list[Any], Any]:
        """Join two running batches: pad the shorter one's cache after the prefix (masked)."""
        torch = _import_torch()
        if layers is None or mask.shape[0] == 0:
            return new_layers, new_mask

        def widen(pairs: list[tuple[Any, Any]], m: Any, extra: int) -> tuple[list[tuple[Any, Any]], Any]:
            if extra == 0:
                return pairs, m
            widened = []
            for k, v in pairs:
                zk = k.new_zeros(k.shape[0], k.shape[1], extra, k.shape[3])
                zv = v.new_zeros(v.shape[0], v.shape[1], extra, v.shape[3])
                widened.append(
                    (
                        torch.cat([k[:, :, :p], zk, k[:, :, p:]], 2),
                        torch.cat([v[:, :, :p], zv, v[:, :, p:]], 2),
                    )
                )
            zm = m.new_zeros(m.shape[0], extra)
            return widened, torch.cat([m[:, :p], zm, m[:, p:]], 1)

        width = max(mask.shape[1], new_mask.shape[1])
        old, mask = widen([(x.keys, x.values) for x in layers], mask, width - mask.shape[1])
        new, new_mask = widen([(x.keys, x.values) for x in new_layers], new_mask, width - new_mask.shape[1])
        merged = [
            (torch.cat([k, nk], 0), torch.cat([v, nv], 0)) for (k, v), (nk, nv) in zip(old, new, strict=False)
        ]
        return self._buffers(merged, extra=_HEADROOM), torch.cat([mask, new_mask], 0)

    def _decode_step(
        self, loaded: _Loaded, layers: Any, mask: Any, rows: list[_Row]
    ) -> tuple[list[Any], Any]:
        """One token for every row; rows already finished are computed but ignored."""
        torch = _import_torch()
        ids = torch.tensor([[row.generated[-1]] for row in rows], dtype=torch.long)
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], 1)
        positions = (mask.sum(-1, keepdim=True) - 1).clamp(min=0)
        out = loaded.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            cache=self._as_cache(layers),
            use_cache=True,
            logits_to_keep=1,
        )
        self.stats["decode_steps"] += 1
        self._choose(loaded, out.logits[:, -1, :], rows)
        return layers, mask

    def _choose(self, loaded: _Loaded, logits: Any, rows: list[_Row]) -> None:
        """Pick each row's next token, then apply EOS, stop strings and max_tokens."""
        torch = _import_torch()
        greedy = logits.argmax(-1).tolist()
        for i, row in enumerate(rows):
            if row.finish is not None:  # finished earlier, still in the batch
                continue
            request = row.request
            if request.response_format == "json":
                token = self._json_token(loaded, logits[i], row)
            elif request.temperature > 0:
                if row.generator is None:
                    row.generator = torch.Generator().manual_seed(stable_seed(request))
                probs = torch.softmax(logits[i].float() / request.temperature, -1)
                token = int(torch.multinomial(probs, 1, generator=row.generator).item())
            else:
                token = int(greedy[i])
            row.generated.append(token)
            if token in loaded.eos_ids:
                row.finish = "stop"
                row.text = self._decode(loaded, row.generated[:-1])
                continue
            text = self._decode(loaded, row.generated)
            if request.stop:
                cut = find_stop(text, request.stop, len(row.text))
                if cut is not None:
                    row.text = text[:cut]
                    row.finish = "stop"
                    continue
            row.text = text
            if len(row.generated) >= request.max_tokens:
                row.finish = "length"
        now = time.perf_counter()
        ended = [row for row in rows if row.finish is not None and not row.ended]
        for row in ended:
            row.ended = now
        if ended and self._rows_finished is not None:
            self._rows_finished(ended)

    def _json_token(self, loaded: _Loaded, logits: Any, row: _Row) -> int:
        """The next token of a json_mode request: the best one that keeps a valid JSON object."""
        if row.json is None:
            row.json = self._json.matcher(loaded, row.request)
        if row.request.temperature > 0 and row.generator is None:
            import numpy as np

            row.generator = np.random.default_rng(stable_seed(row.request))
        return int(row.json.pick(logits.float().numpy(), row.request.temperature, row.generator))

    @staticmethod
    def _decode(loaded: _Loaded, ids: list[int]) -> str:
        return str(loaded.tokenizer.decode(ids, skip_special_tokens=True))

"""Optional pedalboard effects after the mix, configured as JSON.

``DX7LAKE_EFFECTS='[{"name": "Reverb", "room_size": 0.3}, {"name": "Chorus"}]'``: each
entry names a built-in pedalboard plugin and sets its parameters. The JSON is stored
with every manifest row, so a row still reproduces its render. Effects are reset for
every phrase: a phrase never hears the tail of the one before it.
"""

from __future__ import annotations

import json

import numpy as np


class EffectsChain:
    def __init__(self, board, sample_rate: int) -> None:
        self.board = board
        self.sample_rate = sample_rate

    @classmethod
    def from_json(cls, config: str, sample_rate: int) -> EffectsChain | None:
        if not config:
            return None
        import pedalboard

        try:
            entries = json.loads(config)
            if not isinstance(entries, list):
                raise ValueError('the chain must be a JSON list of {"name": ..., params} objects')
            plugins = []
            for entry in entries:
                params = dict(entry)
                name = params.pop("name")
                plugin_cls = getattr(pedalboard, name, None)
                if not isinstance(plugin_cls, type) or not issubclass(plugin_cls, pedalboard.Plugin):
                    raise ValueError(f"{name!r} is not a pedalboard plugin")
                plugins.append(plugin_cls(**params))
        except (ValueError, TypeError, KeyError) as err:
            raise ValueError(f"bad effects chain {config!r}: {err}") from err
        return cls(pedalboard.Pedalboard(plugins), sample_rate)

    def process(self, mix: np.ndarray) -> np.ndarray:
        out = self.board(mix.astype(np.float32)[np.newaxis, :], self.sample_rate, reset=True)
        return out[0, : len(mix)].astype(np.float64)

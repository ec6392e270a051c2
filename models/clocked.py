"""A clocked cycle model on the one event kernel (issue 18 item 1): the
adapter that lets :class:`~tlpoe.models.bridge.BridgeModel` (or any model
with ``step(**inputs)``) run beside the event-driven models of
:mod:`tlpoe.models.events`, one step per clock cycle.

:class:`ClockedModel` schedules the model's :meth:`step` every
``period_ns`` on an :class:`~tlpoe.models.events.EventKernel`, cycle ``n``
at ``start_ns + n * period_ns``: ``inputs(n)`` gives the cycle's inputs
(read at the cycle's event, so other events scheduled earlier at that time
have been run), ``outputs(n, shown)`` takes what the model shows. It does
not skip idle stretches (every cycle is an event): a skip would need each
twin to say when its next change can come (timers, counters), which none
does yet.
"""

__all__ = ["ClockedModel"]


class ClockedModel:
    """``model`` stepped every ``period_ns`` on ``kernel`` from
    ``start_ns`` for ``cycles`` cycles (None: until the kernel stops);
    ``inputs(cycle) -> dict`` and ``outputs(cycle, shown)`` as in the
    module's docstring."""

    def __init__(self, kernel, model, *, period_ns=4.0, start_ns=0.0, cycles=None,
                 inputs=lambda cycle: {}, outputs=lambda cycle, shown: None):
        if not period_ns > 0:
            raise ValueError(f"period_ns must be positive, not {period_ns!r}")
        self.kernel, self.model = kernel, model
        self.period_ns, self.start_ns, self.cycles = period_ns, start_ns, cycles
        self.inputs, self.outputs = inputs, outputs
        self.cycle = 0
        kernel.schedule(start_ns, self._tick)

    def _tick(self):
        n = self.cycle
        self.outputs(n, self.model.step(**self.inputs(n)))
        self.cycle = n + 1
        if self.cycles is None or self.cycle < self.cycles:
            self.kernel.schedule(self.start_ns + self.cycle * self.period_ns, self._tick)

r"""Inexact proximal maps on a schedule: the inner iteration cap of the :math:`k`-th latent
step, loose while the outer algorithm moves fast and tight as it settles.

.. math:: m_k = \operatorname{round}\Big(m_0 + (m_1 - m_0)\,\min\big(\tfrac{k}{K}, 1\big)\Big)
   \quad\text{(linear)}, \qquad
   m_k = \operatorname{round}\Big(m_0 \big(\tfrac{m_1}{m_0}\big)^{\min(k / K,\, 1)}\Big)
   \quad\text{(geometric)},

for :math:`k = 0, 1, \dots` (the proximal maps counted since the regulariser's last
``reset``): :math:`m_0` inner iterations for the first map, :math:`m_1` from the :math:`K`-th on.
Torch free (no CIL import).
"""
import math

#: the ``kind`` choices of :class:`InnerSchedule`
SCHEDULE_KINDS = ("linear", "geometric")


class InnerSchedule:
    r"""The inner iteration cap :math:`m_k` of the :math:`k`-th proximal map (module docstring).

    Parameters
    ----------
    start : int
        :math:`m_0 \ge 1`, the cap of the first proximal map.
    stop : int
        :math:`m_1 \ge 1`, the cap from the ``length``-th proximal map on.
    length : int
        :math:`K \ge 1`, the proximal maps over which the cap moves from ``start`` to ``stop``.
    kind : {"linear", "geometric"}

    Raises
    ------
    ValueError
        for caps or a length below 1, or an unknown kind.

    Example
    -------
    >>> InnerSchedule(1, 5, 40)(20)
    3
    """

    def __init__(self, start, stop, length=50, kind="linear"):
        for name, value in (("start", start), ("stop", stop), ("length", length)):
            if isinstance(value, bool) or int(value) != value or int(value) < 1:
                raise ValueError(f"inner_schedule's {name} must be a positive integer, got "
                                 f"{value!r}")
        if kind not in SCHEDULE_KINDS:
            raise ValueError(f"inner_schedule's kind must be one of {SCHEDULE_KINDS}, got "
                             f"{kind!r}")
        self.start, self.stop, self.length, self.kind = int(start), int(stop), int(length), kind

    def __call__(self, k):
        """:math:`m_k`, the cap of proximal map ``k`` (0-based)."""
        t = min(max(int(k), 0) / self.length, 1.0)
        if self.kind == "linear":
            m = self.start + (self.stop - self.start) * t
        else:
            m = self.start * (self.stop / self.start) ** t
        return max(1, int(math.floor(m + 0.5)))

    def __repr__(self):
        return (f"InnerSchedule(start={self.start}, stop={self.stop}, length={self.length}, "
                f"kind={self.kind!r})")


def as_schedule(schedule):
    """None, an :class:`InnerSchedule`, a callable ``k -> cap``, or a tuple of
    :class:`InnerSchedule`'s arguments ``(start, stop[, length[, kind]])``.

    Raises
    ------
    TypeError
        for anything else.
    """
    if schedule is None or callable(schedule):
        return schedule
    if isinstance(schedule, (tuple, list)) and 2 <= len(schedule) <= 4:
        return InnerSchedule(*schedule)
    raise TypeError(f"inner_schedule must be None, (start, stop[, length[, kind]]) or a "
                    f"callable k -> inner iterations, got {schedule!r}")

"""Learning-rate schedules. Each gives the rate for a step and keeps what it needs to resume.

    sched = make_schedule("cosine", lr=2e-3, warmup=100, total=5000)
    opt.lr = sched.lr(step, epoch)          # step: updates done so far; epoch: passes done
    sched.observe(val_loss)                 # after each validation (only plateau uses it)
    if sched.stop: ...                      # plateau ran out of halvings

Every schedule multiplies its rate by `scale`, which the trainer halves when it rolls back from
a NaN. `state_dict()` holds plain numbers only, so a resumed run continues bit for bit.
"""
import math


class Schedule:
    name = ""

    def __init__(self, lr):
        if not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"learning rate must be a number > 0, got {lr}")
        self.base = float(lr)
        self.scale = 1.0
        self.stop = False

    def lr(self, step, epoch):
        return self.base * self.scale * self._factor(step, epoch)

    def _factor(self, step, epoch):
        return 1.0

    @staticmethod
    def options(section):
        """This schedule's keyword arguments from a config's [schedule] section
        (rnnkit/model/config.py, ScheduleConfig)."""
        return {}

    def observe(self, val_loss):
        """Called with each validation loss; constant, step and cosine ignore it."""

    def afresh(self):
        """Validation moves to another split (a new corpus): what was observed no longer
        compares; the rate stays as it is."""

    def _fields(self):
        return ["scale", "stop"]

    def state_dict(self):
        return {"name": self.name, **{key: getattr(self, key) for key in self._fields()}}

    def load_state_dict(self, state):
        if state["name"] != self.name:
            raise ValueError(f"schedule state is for {state['name']!r}, not {self.name!r}")
        for key in self._fields():
            default = getattr(self, key)
            value = state[key]
            if isinstance(default, bool):
                value = bool(value)
            elif isinstance(default, int):
                value = int(value)
            elif isinstance(default, float):
                value = float(value)
            setattr(self, key, value)


class Constant(Schedule):
    name = "constant"


class Step(Schedule):
    """lr * factor ** ((epoch - start) // every + 1) once epoch >= start, else lr.

    start=every is torch-rnn's lr_decay_every / lr_decay_factor; Zaremba et al.'s PTB models
    keep the lr for `start` epochs, then decay it every epoch (every=1)."""

    name = "step"

    def __init__(self, lr, every=5, factor=0.5, start=None):
        super().__init__(lr)
        start = every if start is None else start
        if every < 1 or start < 0 or not 0 < factor <= 1:
            raise ValueError("step schedule: every must be >= 1, start >= 0, 0 < factor <= 1")
        self.every, self.factor, self.start = int(every), float(factor), int(start)

    @staticmethod
    def options(s):
        return dict(every=s.lr_decay_every, factor=s.lr_decay_factor,
                    start=None if s.lr_decay_start < 0 else s.lr_decay_start)

    def _factor(self, step, epoch):
        epoch = int(epoch)
        if epoch < self.start:
            return 1.0
        return self.factor ** ((epoch - self.start) // self.every + 1)


class Cosine(Schedule):
    """Linear warm-up over `warmup` steps, then half a cosine from lr down to min_lr at step
    `total`, then min_lr (nanoGPT's get_lr)."""

    name = "cosine"

    def __init__(self, lr, warmup=0, total=1000, min_lr=0.0):
        super().__init__(lr)
        if warmup < 0 or total <= warmup or not 0 <= min_lr <= lr:
            raise ValueError(f"cosine schedule: need 0 <= warmup < total and 0 <= min_lr <= lr "
                             f"(warmup={warmup}, total={total}, min_lr={min_lr})")
        self.warmup, self.total, self.min_ratio = int(warmup), int(total), min_lr / lr

    @staticmethod
    def options(s):
        return dict(warmup=s.warmup, total=s.decay_steps, min_lr=s.min_lr)

    def _factor(self, step, epoch):
        if step < self.warmup:
            return (step + 1) / (self.warmup + 1)
        if step >= self.total:
            return self.min_ratio
        progress = (step - self.warmup) / (self.total - self.warmup)
        return self.min_ratio + 0.5 * (1.0 + math.cos(math.pi * progress)) * (1 - self.min_ratio)


class Plateau(Schedule):
    """Mikolov's rnnlm rule: when a validation loss improves on the previous one by less than
    `threshold` (relative), multiply the rate by `factor`; when that would happen for the
    (max_halvings + 1)-th time, set `stop` instead."""

    name = "plateau"

    def __init__(self, lr, threshold=0.003, factor=0.5, max_halvings=6):
        super().__init__(lr)
        if threshold < 0 or not 0 < factor < 1 or max_halvings < 0:
            raise ValueError("plateau schedule: need threshold >= 0, 0 < factor < 1, "
                             "max_halvings >= 0")
        self.threshold, self.factor, self.max_halvings = float(threshold), float(factor), \
            int(max_halvings)
        self.halvings = 0
        self.last = math.inf

    @staticmethod
    def options(s):
        return dict(threshold=s.plateau_threshold, factor=s.lr_decay_factor,
                    max_halvings=s.max_decays)

    def _fields(self):
        return super()._fields() + ["halvings", "last"]

    def _factor(self, step, epoch):
        return self.factor ** self.halvings

    def afresh(self):
        self.last, self.stop = math.inf, False      # the halvings made stay in the rate

    def observe(self, val_loss):
        gain = (self.last - val_loss) / abs(self.last) if math.isfinite(self.last) else math.inf
        self.last = min(self.last, val_loss) if math.isfinite(val_loss) else self.last
        if not gain >= self.threshold:  # a NaN loss is no improvement
            if self.halvings >= self.max_halvings:
                self.stop = True
            else:
                self.halvings += 1


SCHEDULES = {cls.name: cls for cls in (Constant, Step, Cosine, Plateau)}


def make_schedule(name, lr, **options):
    """A schedule by name ('constant', 'step', 'cosine', 'plateau')."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; choose one of {sorted(SCHEDULES)}")
    return SCHEDULES[name](lr, **options)


def keys(section):
    """The [schedule] keys that the section's schedule reads (its options), in order."""
    read = []

    class Reads:
        def __getattr__(self, key):
            read.append(key)
            return getattr(section, key)
    SCHEDULES[section.schedule].options(Reads())
    return read


def from_config(section, lr):
    """The schedule a config's [schedule] section (ScheduleConfig) describes, from rate lr."""
    if section.schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {section.schedule!r}; choose one of "
                         f"{', '.join(SCHEDULES)}")
    cls = SCHEDULES[section.schedule]
    return cls(lr, **cls.options(section))

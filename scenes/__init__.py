"""PyBullet scenes for the lab, registered with Gymnasium.

Importing this package registers ``lab/Reach-v0``, ``lab/Wall-v0``,
``lab/Push-v0``, ``lab/Kitchen-v0`` and ``lab/KitchenOccluded-v1`` (the Gymnasium
convention: ``import scenes; gymnasium.make("lab/Reach-v0")``); ``gymnasium.make`` wraps each in a
``TimeLimit`` of the scene's step limit. Registering needs only the
entry-point strings and the step limits written in ``SCENES``, so importing
this package pulls no PyBullet (a GPU machine with torch alone imports the
world models and planners, which read ``scenes.errors`` and ``scene_key``;
without Gymnasium there it registers nothing): a scene's module is imported
when its class is asked for. A new scene is one file plus one line in
``SCENES``; a test checks each step limit matches the class's
``MAX_EPISODE_STEPS``.
"""

from __future__ import annotations

from common.errors import LabError

# short name -> (gymnasium id, "module:Class", max episode steps)
SCENES = {
    "reach": ("lab/Reach-v0", "scenes.reach:ReachEnv", 100),
    "wall": ("lab/Wall-v0", "scenes.wall:WallEnv", 150),
    "push": ("lab/Push-v0", "scenes.push:PushEnv", 200),
    "kitchen": ("lab/Kitchen-v0", "scenes.kitchen:KitchenEnv", 100),
    "occluded": ("lab/KitchenOccluded-v1", "scenes.occluded:OccludedEnv", 100),
}
# Bullet-Safety-Gym's tasks (scenes.safety): short name -> (the package's id, its step
# limit). Registered as ``lab/<id>``; a test checks the table against the package.
FOREIGN = {
    f"{agent.lower()}{family.lower()}": (f"Safety{agent}{family}-v0", steps)
    for agent, family, steps in (
        ("Ball", "Reach", 250),
        ("Car", "Reach", 500),
        ("Ant", "Reach", 1000),
        ("Drone", "Reach", 500),
        ("Ball", "Push", 250),
        ("Car", "Push", 500),
        ("Ball", "Circle", 200),
        ("Car", "Circle", 300),
        ("Ant", "Circle", 500),
        ("Drone", "Circle", 300),
        ("Ball", "Run", 100),
        ("Car", "Run", 200),
        ("Ant", "Run", 200),
        ("Drone", "Run", 200),
        ("Ball", "Gather", 250),
        ("Car", "Gather", 500),
        ("Ant", "Gather", 1000),
        ("Drone", "Gather", 500),
    )
}
# The four the benchmark measures (benchmarks/safety_gym.py) and the app offers first.
BENCHMARK = ("ballcircle", "carcircle", "ballrun", "carrun")


def all_keys() -> list[str]:
    """Every scene's short name: the lab's own, then the benchmark's tasks."""
    return [*SCENES, *FOREIGN]


def is_foreign(name: str) -> bool:
    """Whether the scene is a Bullet-Safety-Gym task (no goal; reward and cost)."""
    return scene_key(name) in FOREIGN


def env_id(name: str) -> str:
    """The Gymnasium id a scene is registered under (``lab/Reach-v0``)."""
    key = scene_key(name)
    return SCENES[key][0] if key in SCENES else f"lab/{FOREIGN[key][0]}"


def max_steps(name: str) -> int:
    """The scene's step limit (its ``TimeLimit``)."""
    key = scene_key(name)
    return SCENES[key][2] if key in SCENES else FOREIGN[key][1]


def scene_class(name: str):
    """The env class for a short name (``"reach"``) or id (``"lab/Reach-v0"``)."""
    key = scene_key(name)
    if key in FOREIGN:
        from scenes.safety import task_class  # heavy: imports PyBullet and the package

        return task_class(key, *FOREIGN[key])
    module, cls = SCENES[key][1].split(":")
    return getattr(__import__(module, fromlist=[cls]), cls)


def scene_key(name: str) -> str:
    """``"lab/Reach-v0"`` or ``"Reach"`` -> ``"reach"``, ``"SafetyBallCircle-v0"`` or
    ``"lab/SafetyBallCircle-v0"`` -> ``"ballcircle"``; unknown names raise."""
    low = str(name).lower()
    for key, (env_id, _entry, _steps) in SCENES.items():
        if low in (key, env_id.lower()):
            return key
    for key, (task_id, _steps) in FOREIGN.items():
        if low in (key, task_id.lower(), f"lab/{task_id.lower()}"):
            return key
    raise LabError(
        f"unknown scene {name!r}; choose one of {', '.join(SCENES)} or a Bullet-Safety-Gym "
        f"task ({', '.join(v[0] for v in FOREIGN.values())})"
    )


def make(name: str, **kwargs):
    """``gymnasium.make`` for a short name or id, with the scene's TimeLimit."""
    import gymnasium as gym  # optional heavy dependency: a torch-only machine lacks it

    register()
    return gym.make(env_id(name), **kwargs)


def register() -> bool:
    """Register every scene's id with Gymnasium (once); False without Gymnasium.

    Importing the package calls this; calling it again is harmless.
    """
    try:
        import gymnasium as gym  # optional heavy dependency: a torch-only machine lacks it
    except ImportError:
        return False
    for gym_id, entry, steps in SCENES.values():
        if gym_id not in gym.registry:
            gym.register(id=gym_id, entry_point=entry, max_episode_steps=steps)
    for key, (task_id, steps) in FOREIGN.items():
        if f"lab/{task_id}" not in gym.registry:
            gym.register(
                id=f"lab/{task_id}",
                entry_point="scenes.safety:make",
                max_episode_steps=steps,
                kwargs={"key": key, "task_id": task_id, "steps": steps},
            )
    return True


register()

__all__ = [
    "BENCHMARK",
    "FOREIGN",
    "SCENES",
    "LabError",
    "all_keys",
    "env_id",
    "is_foreign",
    "make",
    "max_steps",
    "register",
    "scene_class",
    "scene_key",
]

"""PyBullet scenes for the lab, registered with Gymnasium.

Importing this package registers ``lab/Reach-v0``, ``lab/Wall-v0``,
``lab/Push-v0`` and ``lab/Kitchen-v0`` (the Gymnasium convention: ``import
scenes; gymnasium.make("lab/Reach-v0")``); ``gymnasium.make`` wraps each in a
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
}


def scene_class(name: str):
    """The env class for a short name (``"reach"``) or id (``"lab/Reach-v0"``)."""
    key = scene_key(name)
    module, cls = SCENES[key][1].split(":")
    return getattr(__import__(module, fromlist=[cls]), cls)


def scene_key(name: str) -> str:
    """``"lab/Reach-v0"`` or ``"Reach"`` -> ``"reach"``; unknown names raise."""
    for key, (env_id, _entry, _steps) in SCENES.items():
        if name.lower() in (key, env_id.lower()):
            return key
    raise LabError(f"unknown scene {name!r}; choose one of {', '.join(SCENES)}")


def make(name: str, **kwargs):
    """``gymnasium.make`` for a short name or id, with the scene's TimeLimit."""
    import gymnasium as gym  # optional heavy dependency: a torch-only machine lacks it

    register()
    return gym.make(SCENES[scene_key(name)][0], **kwargs)


def register() -> bool:
    """Register every scene's id with Gymnasium (once); False without Gymnasium.

    Importing the package calls this; calling it again is harmless.
    """
    try:
        import gymnasium as gym  # optional heavy dependency: a torch-only machine lacks it
    except ImportError:
        return False
    for env_id, entry, steps in SCENES.values():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=entry, max_episode_steps=steps)
    return True


register()

__all__ = ["SCENES", "LabError", "make", "register", "scene_class", "scene_key"]

"""The objective-driven agent, what decides: cost terms and their expression language,
planners, the receding-horizon agent and its deciders, the policy, two levels, the
oracle, and one way to build an agent (``agents.build``). What measures it lives in
``experiments``."""

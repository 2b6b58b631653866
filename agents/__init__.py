"""The objective-driven agent: cost terms, expression language, planners, evaluation."""

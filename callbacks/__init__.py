"""Lightning callbacks, one per pruning timing (at init, after fit, iterative, gradual).

They stay thin: the maths lives in ``nmt_prune`` (masks, saliency, allocation, schedules).
"""

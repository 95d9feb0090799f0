"""ImageNet as binary-reward classification (paper section 6.1): ResNet, objectives, driver.

Its experiments in the reproduction (:mod:`experiments.common.drivers`): ``{name: preset}``.
"""

EXPERIMENTS = {"imagenet": "{preset}"}

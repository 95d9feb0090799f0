"""ImageNet as binary-reward classification (paper section 6.1): ResNet, objectives, driver."""

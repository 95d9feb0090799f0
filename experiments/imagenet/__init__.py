"""ImageNet as binary-reward classification (SPEC section 4.2): ResNet, objectives, driver."""

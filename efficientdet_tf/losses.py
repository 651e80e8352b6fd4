"""Detection loss: sigmoid focal loss on classes, Huber loss on box deltas, L2 weight decay."""

import tensorflow as tf


def focal_loss(logits, targets_one_hot, alpha, gamma, label_smoothing=0.0):
    """Element-wise sigmoid focal loss (Lin et al.), same shape as `logits`."""
    targets = targets_one_hot
    if label_smoothing:
        targets = targets * (1.0 - label_smoothing) + 0.5 * label_smoothing
    prob = tf.sigmoid(logits)
    p_t = targets_one_hot * prob + (1.0 - targets_one_hot) * (1.0 - prob)
    alpha_t = targets_one_hot * alpha + (1.0 - targets_one_hot) * (1.0 - alpha)
    ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=logits)
    return alpha_t * tf.pow(1.0 - p_t, gamma) * ce


def huber_loss(predictions, targets, delta):
    """Element-wise Huber loss."""
    error = tf.abs(predictions - targets)
    quadratic = tf.minimum(error, delta)
    return 0.5 * quadratic * quadratic + delta * (error - quadratic)


def detection_loss(class_outputs, box_outputs, labels, *, num_classes, min_level=3, alpha=0.25,
                   gamma=1.5, delta=0.1, box_loss_weight=50.0, label_smoothing=0.0, normalizer=None,
                   mask_zero_box_targets=True):
    """Total loss and its parts for one batch.

    Args:
      class_outputs, box_outputs: the network's per-level lists ([B, H, W, A*C], [B, H, W, A*4]),
        levels min_level, min_level + 1, ...
      labels: the input pipeline's dict: 'cls_targets_p<l>' int32 [B, H, W, A] (class channel, -1
        negative, -2 ignored), 'box_targets_p<l>' [B, H, W, A*4], 'num_positives' [B].
      num_classes, min_level, alpha, gamma, delta, box_loss_weight, label_smoothing: the loss
        hparams (`factory.build_loss_fn` fills them in from the config).
      normalizer: optional scalar that replaces `sum(num_positives) + 1`. A distributed trainer
        passes the positives summed over every replica (+ 1), so that summing the replicas' losses
        gives the loss of the global batch whatever the replica count.
      mask_zero_box_targets: also leave out every box coordinate whose target is exactly 0.0, even
        on a positive anchor, as the official implementation does (its box loss weights are
        `box_targets != 0`). False counts all four coordinates of every positive anchor.

    Returns:
      dict with 'cls_loss', 'box_loss' (each normalised by positives + 1) and 'det_loss' =
      cls_loss + box_loss_weight * box_loss. Weight decay is added by the caller (`l2_loss`).
    """
    if normalizer is None:
        normalizer = tf.reduce_sum(tf.cast(labels["num_positives"], tf.float32)) + 1.0
    normalizer = tf.cast(normalizer, tf.float32)
    cls_sum, box_sum = 0.0, 0.0
    for i, level in enumerate(range(min_level, min_level + len(class_outputs))):
        cls_targets = labels["cls_targets_p%d" % level]
        logits = tf.cast(class_outputs[i], tf.float32)
        shape = tf.shape(cls_targets)
        logits = tf.reshape(logits, tf.concat([shape, [num_classes]], 0))
        one_hot = tf.one_hot(tf.maximum(cls_targets, 0), num_classes) * tf.cast(
            cls_targets >= 0, tf.float32)[..., None]
        valid = tf.cast(cls_targets > -2, tf.float32)[..., None]
        cls_sum += tf.reduce_sum(focal_loss(logits, one_hot, alpha, gamma, label_smoothing) * valid)
        box_targets = tf.cast(labels["box_targets_p%d" % level], tf.float32)
        mask = tf.repeat(cls_targets >= 0, 4, axis=-1)
        if mask_zero_box_targets:
            mask &= tf.not_equal(box_targets, 0.0)
        box_sum += tf.reduce_sum(huber_loss(tf.cast(box_outputs[i], tf.float32), box_targets,
                                            delta) * tf.cast(mask, tf.float32))
    cls_loss = cls_sum / normalizer
    box_loss = box_sum / (normalizer * 4.0)
    return {"cls_loss": cls_loss, "box_loss": box_loss,
            "det_loss": cls_loss + box_loss_weight * box_loss}


def l2_loss(variables, weight_decay):
    """weight_decay * 1/2 * sum of squares over convolution and dense kernels (not BN or biases)."""
    kernels = [v for v in variables if "kernel" in v.name]
    return weight_decay * tf.add_n([tf.nn.l2_loss(tf.cast(v, tf.float32)) for v in kernels])

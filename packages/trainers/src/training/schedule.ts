/**
 * Learning-rate schedules of a TrainingRecipe. Time is measured in (fractional) epochs so that
 * step milestones mean the same thing whatever the batch size.
 */
import { ValidationError, type LrSchedule } from '@flatrank/protocol';

/**
 * Learning rate at `epoch` (0-based, fractional: epoch + stepInEpoch / stepsPerEpoch).
 * - constant: lr.
 * - step: lr * gamma^(number of milestones <= epoch) (a milestone at 5 applies from epoch 5 on).
 * - cosine: minLr + (lr - minLr) * (1 + cos(pi * epoch / totalEpochs)) / 2, clamped at the end.
 */
export function learningRateAt(
  schedule: LrSchedule,
  baseLr: number,
  epoch: number,
  totalEpochs: number,
): number {
  if (!(baseLr > 0)) throw new ValidationError('training.lr', `training.lr: must be > 0, got ${baseLr}`);
  switch (schedule.kind) {
    case 'constant':
      return baseLr;
    case 'step': {
      let passed = 0;
      // A tiny epsilon so that float accumulation of step/stepsPerEpoch lands on the milestone.
      for (const m of schedule.milestones) if (epoch + 1e-9 >= m) passed += 1;
      return baseLr * Math.pow(schedule.gamma, passed);
    }
    case 'cosine': {
      if (totalEpochs <= 0) return baseLr;
      const t = Math.min(Math.max(epoch / totalEpochs, 0), 1);
      return schedule.minLr + ((baseLr - schedule.minLr) * (1 + Math.cos(Math.PI * t))) / 2;
    }
  }
}

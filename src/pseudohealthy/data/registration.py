"""Bias correction and registration with SimpleITK (Mattes mutual information).

SimpleITK transforms map points of the *fixed* image to the *moving* image (physical LPS mm),
which is what resampling the moving image onto the fixed grid needs.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

REGISTRATION_SEED = 12345  # fixed sampling seed: the same inputs give the same transform


def head_mask(img: sitk.Image) -> sitk.Image:
    """Otsu foreground with holes filled: the head (or the brain, for skull-stripped input)."""
    mask = sitk.OtsuThreshold(img, 0, 1, 200)
    mask = sitk.BinaryMorphologicalClosing(mask, [2, 2, 2])
    return sitk.BinaryFillhole(mask)


def n4_correct(img: sitk.Image, shrink: int = 4, iterations: tuple[int, ...] = (50, 40, 30)) -> sitk.Image:
    """N4 bias-field correction estimated on a shrunken copy, applied at full resolution."""
    img = sitk.Cast(img, sitk.sitkFloat32)
    mask = head_mask(img)
    small = sitk.Shrink(img, [shrink] * 3)
    small_mask = sitk.Shrink(mask, [shrink] * 3)
    n4 = sitk.N4BiasFieldCorrectionImageFilter()
    n4.SetMaximumNumberOfIterations(list(iterations))
    n4.Execute(small, small_mask)
    log_bias = n4.GetLogBiasFieldAsImage(img)
    corrected = sitk.Cast(img / sitk.Exp(log_bias), sitk.sitkFloat32)
    # N4's field has an arbitrary overall scale: keep the head's mean intensity as it was.
    stats_in, stats_out = sitk.LabelStatisticsImageFilter(), sitk.LabelStatisticsImageFilter()
    stats_in.Execute(img, mask)
    stats_out.Execute(corrected, mask)
    return corrected * (stats_in.GetMean(1) / max(stats_out.GetMean(1), 1e-12))


def _method(shrink: list[int], smooth: list[float], sampling: float, iterations: int,
            fixed_mask: sitk.Image | None = None) -> sitk.ImageRegistrationMethod:
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    reg.SetMetricSamplingStrategy(reg.REGULAR)
    reg.SetMetricSamplingPercentage(sampling, REGISTRATION_SEED)
    if fixed_mask is not None:
        reg.SetMetricFixedMask(fixed_mask)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(learningRate=1.0, minStep=1e-4, numberOfIterations=iterations,
                                                 relaxationFactor=0.6, gradientMagnitudeTolerance=1e-6)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel(shrink)
    reg.SetSmoothingSigmasPerLevel(smooth)
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    return reg


def register_rigid(fixed: sitk.Image, moving: sitk.Image) -> sitk.Euler3DTransform:
    """Rigid transform fixed -> moving, starting from the scanners' own alignment (identity).

    For T1 and FLAIR of one session the world coordinates already roughly agree; only head motion
    between the scans is left.
    """
    center = fixed.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in fixed.GetSize()])
    init = sitk.Euler3DTransform()
    init.SetCenter(center)
    reg = _method([4, 2, 1], [2.0, 1.0, 0.0], sampling=0.05, iterations=200, fixed_mask=head_mask(fixed))
    reg.SetInitialTransform(init, inPlace=True)
    reg.Execute(sitk.Cast(fixed, sitk.sitkFloat32), sitk.Cast(moving, sitk.sitkFloat32))
    return init


def register_affine(fixed: sitk.Image, moving: sitk.Image, fixed_mask: sitk.Image) -> sitk.AffineTransform:
    """Affine transform fixed (template) -> moving (subject), initialised by centres of mass."""
    moving_f = sitk.Cast(moving, sitk.sitkFloat32)
    moving_head = sitk.Cast(head_mask(moving_f), sitk.sitkFloat32)
    init = sitk.CenteredTransformInitializer(sitk.Cast(fixed_mask, sitk.sitkFloat32), moving_head,
                                             sitk.Euler3DTransform(),
                                             sitk.CenteredTransformInitializerFilter.MOMENTS)
    rigid = _method([4, 2], [4.0, 2.0], sampling=0.2, iterations=150, fixed_mask=fixed_mask)
    rigid.SetInitialTransform(init, inPlace=True)
    rigid.Execute(sitk.Cast(fixed, sitk.sitkFloat32), moving_f)
    affine = sitk.AffineTransform(3)
    affine.SetCenter(init.GetCenter())
    affine.SetMatrix(init.GetMatrix())
    affine.SetTranslation(init.GetTranslation())
    reg = _method([2, 1], [2.0, 0.0], sampling=0.2, iterations=200, fixed_mask=fixed_mask)
    reg.SetInitialTransform(affine, inPlace=True)
    reg.Execute(sitk.Cast(fixed, sitk.sitkFloat32), moving_f)
    return affine


def register_bspline(fixed: sitk.Image, moving: sitk.Image, fixed_mask: sitk.Image, initial: sitk.Transform,
                     mesh_mm: float = 40.0) -> sitk.CompositeTransform:
    """B-spline refinement on top of ``initial``; returns ``initial ∘ bspline`` (fixed -> moving)."""
    physical = np.asarray(fixed.GetSize()) * np.asarray(fixed.GetSpacing())
    mesh = [max(1, int(round(p / mesh_mm))) for p in physical]
    bspline = sitk.BSplineTransformInitializer(fixed, mesh, order=3)
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(32)
    reg.SetMetricSamplingStrategy(reg.REGULAR)
    reg.SetMetricSamplingPercentage(0.1, REGISTRATION_SEED)
    reg.SetMetricFixedMask(fixed_mask)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsLBFGSB(gradientConvergenceTolerance=1e-5, numberOfIterations=50)
    reg.SetShrinkFactorsPerLevel([2, 1])
    reg.SetSmoothingSigmasPerLevel([1.0, 0.0])
    reg.SetMovingInitialTransform(initial)
    reg.SetInitialTransform(bspline, inPlace=True)
    reg.Execute(sitk.Cast(fixed, sitk.sitkFloat32), sitk.Cast(moving, sitk.sitkFloat32))
    return sitk.CompositeTransform([initial, bspline])


def rotation_angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    """Angle of the rotation that takes 3x3 rotation ``a`` to ``b``."""
    r = np.asarray(a).T @ np.asarray(b)
    return float(np.degrees(np.arccos(np.clip((np.trace(r) - 1) / 2, -1.0, 1.0))))

// TorchSharp 0.107's optimizers make their coefficients into Scalars implicitly in every step (per parameter: SGD 1,
// with momentum 3, Adam 8, AdamW 9, RMSprop 5), and nothing keeps those alive during the native call (see
// ConvKit.Native.Scalars). These subclasses override only step(): the same arithmetic in the same order, with the same
// in-place ops and Scalars of the same .NET types (double coefficients, the int 1 and -1 TorchSharp's overloads pass),
// but each Scalar held by a `using` until the calls that read it have returned. Parameter groups, options and the
// per-parameter State objects are TorchSharp's own, so learning-rate changes, state_dict and ConvKit's checkpoints
// see exactly what they saw before. The nested classes keep TorchSharp's type names, which save_state_dict writes.
// OptimizerStepTests compares every step and state bit for bit with TorchSharp's.
using ConvKit.Native;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using TorchSGD = TorchSharp.Modules.SGD;
using TorchAdam = TorchSharp.Modules.Adam;
using TorchAdamW = TorchSharp.Modules.AdamW;
using TorchRMSProp = TorchSharp.Modules.RMSProp;

namespace ConvKit.Training;

/// <summary>TorchSharp's SGD, Adam, AdamW and RMSProp with a step that keeps its Scalars alive.</summary>
internal static class ScalarSafe
{
    /// <summary>TorchSharp's SGD (momentum, dampening, L2 weight decay, Nesterov, maximize).</summary>
    internal sealed class SGD(IEnumerable<Parameter> parameters, double lr, double momentum = 0, double dampening = 0,
        double weight_decay = 0, bool nesterov = false, bool maximize = false)
        : TorchSGD(parameters, lr, momentum, dampening, weight_decay, nesterov, maximize)
    {
        /// <inheritdoc/>
        public override Tensor step(Func<Tensor>? closure = null) => _step<ParamGroup>(group =>
        {
            var o = group.Options;
            double momentum = o.momentum!.Value, dampening = o.dampening!.Value, weightDecay = o.weight_decay!.Value, lr = o.LearningRate!.Value;
            bool nesterov = o.nesterov!.Value, maximize = o.maximize!.Value;
            using var decay = weightDecay.ToScalar();
            using var mu = momentum.ToScalar();
            using var undamped = (1 - dampening).ToScalar();
            using var rate = (maximize ? lr : -lr).ToScalar();
            foreach (var param in group.Parameters)
            {
                var state = (State)_state[param.Handle];
                var grad = param.grad;
                if (grad is null) continue;
                if (weightDecay != 0) grad = grad.add(param, decay);
                if (momentum != 0)
                {
                    var buf = state.momentum_buffer;
                    if (buf is null) state.momentum_buffer = buf = grad.clone().detach().DetachFromDisposeScope();
                    else buf.mul_(mu).add_(grad, undamped);
                    grad = nesterov ? grad.add(buf, mu) : buf;
                }
                param.add_(grad, rate);
            }
        }, closure);
    }

    /// <summary>TorchSharp's Adam (L2 weight decay, AMSGrad, maximize).</summary>
    internal sealed class Adam(IEnumerable<Parameter> parameters, double lr, double beta1, double beta2, double eps,
        double weight_decay = 0, bool amsgrad = false, bool maximize = false)
        : TorchAdam(parameters, lr, beta1, beta2, eps, weight_decay, amsgrad, maximize)
    {
        /// <inheritdoc/>
        public override Tensor step(Func<Tensor>? closure = null) => _step<ParamGroup>(group =>
        {
            var o = group.Options;
            using var c = new AdamCoefficients(o.beta1!.Value, o.beta2!.Value, o.eps!.Value, o.LearningRate!.Value);
            double weightDecay = o.weight_decay!.Value;
            bool amsgrad = o.amsgrad!.Value, maximize = o.maximize!.Value;
            using var decay = weightDecay.ToScalar();
            foreach (var param in group.Parameters)
            {
                var state = (State)_state[param.Handle];
                var grad = param.grad;
                if (grad is null) continue;
                if (maximize) grad = -grad;
                state.step += 1;
                if (weightDecay != 0) grad = grad.add(param, decay);
                state.exp_avg.mul_(c.Beta1).add_(grad, c.OneMinusBeta1);
                state.exp_avg_sq.mul_(c.Beta2).addcmul_(grad, grad.conj(), c.OneMinusBeta2);
                if (amsgrad)
                {
                    var previous = state.max_exp_avg_sq;
                    state.max_exp_avg_sq = maximum(previous, state.exp_avg_sq).DetachFromDisposeScope();
                    previous.Dispose();
                }
                c.Update(param, state.exp_avg, amsgrad ? state.max_exp_avg_sq : state.exp_avg_sq, state.step);
            }
        }, closure);
    }

    /// <summary>TorchSharp's AdamW (decoupled weight decay, AMSGrad, maximize).</summary>
    internal sealed class AdamW(IEnumerable<Parameter> parameters, double lr, double beta1, double beta2, double eps,
        double weight_decay = 0, bool amsgrad = false, bool maximize = false)
        : TorchAdamW(parameters, lr, beta1, beta2, eps, weight_decay, amsgrad, maximize)
    {
        /// <inheritdoc/>
        public override Tensor step(Func<Tensor>? closure = null) => _step<ParamGroup>(group =>
        {
            var o = group.Options;
            using var c = new AdamCoefficients(o.beta1!.Value, o.beta2!.Value, o.eps!.Value, o.LearningRate!.Value);
            bool amsgrad = o.amsgrad!.Value, maximize = o.maximize!.Value;
            using var keep = (1 - o.LearningRate!.Value * o.weight_decay!.Value).ToScalar();
            foreach (var param in group.Parameters)
            {
                var state = (State)_state[param.Handle];
                var grad = param.grad;
                if (grad is null) continue;
                if (maximize) grad = -grad;
                state.step += 1;
                param.mul_(keep); // TorchSharp decays even at weight_decay 0 (a multiplication by 1)
                state.exp_avg.mul_(c.Beta1).add_(grad, c.OneMinusBeta1);
                state.exp_avg_sq.mul_(c.Beta2).addcmul_(grad, grad, c.OneMinusBeta2);
                if (amsgrad)
                {
                    var previous = state.max_exp_avg_sq;
                    state.max_exp_avg_sq = maximum(previous, state.exp_avg_sq).DetachFromDisposeScope();
                    previous.Dispose();
                }
                c.Update(param, state.exp_avg, amsgrad ? state.max_exp_avg_sq : state.exp_avg_sq, state.step);
            }
        }, closure);
    }

    /// <summary>A parameter group's Adam coefficients as Scalars, and the bias-corrected update they share.</summary>
    sealed class AdamCoefficients(double beta1, double beta2, double eps, double lr) : IDisposable
    {
        public readonly Scalar Beta1 = beta1.ToScalar();
        public readonly Scalar OneMinusBeta1 = (1 - beta1).ToScalar();
        public readonly Scalar Beta2 = beta2.ToScalar();
        public readonly Scalar OneMinusBeta2 = (1 - beta2).ToScalar();
        readonly Scalar epsilon = eps.ToScalar();

        /// <summary><c>param += -(lr / (1 - β₁ᵗ)) · m / (sqrt(v) / sqrt(1 - β₂ᵗ) + ε)</c>, as TorchSharp computes it.</summary>
        public void Update(Tensor param, Tensor expAvg, Tensor secondMoment, long step)
        {
            double biasCorrection1 = 1 - Math.Pow(beta1, step);
            double biasCorrection2 = 1 - Math.Pow(beta2, step);
            using var correction = Math.Sqrt(biasCorrection2).ToScalar();
            using var stepSize = (-(lr / biasCorrection1)).ToScalar();
            var denom = secondMoment.sqrt().div(correction).add_(epsilon, Scalars.One);
            param.addcdiv_(expAvg, denom, stepSize);
        }

        public void Dispose()
        {
            Beta1.Dispose();
            OneMinusBeta1.Dispose();
            Beta2.Dispose();
            OneMinusBeta2.Dispose();
            epsilon.Dispose();
        }
    }

    /// <summary>TorchSharp's RMSProp (L2 weight decay, momentum, centered, maximize).</summary>
    internal sealed class RMSProp(IEnumerable<Parameter> parameters, double lr, double alpha, double eps, double weight_decay = 0,
        double momentum = 0, bool centered = false, bool maximize = false)
        : TorchRMSProp(parameters, lr, alpha, eps, weight_decay, momentum, centered, maximize)
    {
        /// <inheritdoc/>
        public override Tensor step(Func<Tensor>? closure = null) => _step<ParamGroup>(group =>
        {
            var o = group.Options;
            double alpha = o.alpha!.Value, weightDecay = o.weight_decay!.Value, momentum = o.momentum!.Value;
            bool centered = o.centered!.Value, maximize = o.maximize!.Value;
            using var decay = weightDecay.ToScalar();
            using var rho = alpha.ToScalar();
            using var oneMinusRho = (1 - alpha).ToScalar();
            using var epsilon = o.eps!.Value.ToScalar();
            using var mu = momentum.ToScalar();
            using var rate = (-o.LearningRate!.Value).ToScalar();
            foreach (var param in group.Parameters)
            {
                var state = (State)_state[param.Handle];
                var grad = param.grad;
                if (grad is null) continue;
                if (maximize) grad = -grad;
                state.step += 1;
                if (weightDecay != 0) grad = grad.add(param, decay);
                state.square_avg.mul_(rho).addcmul_(grad, grad, oneMinusRho);
                Tensor avg;
                if (centered)
                {
                    state.grad_avg.mul_(rho).add_(grad, oneMinusRho);
                    avg = state.square_avg.addcmul(state.grad_avg, state.grad_avg, Scalars.MinusOne).sqrt_().add_(epsilon, Scalars.One);
                }
                else
                {
                    avg = state.square_avg.sqrt().add_(epsilon, Scalars.One);
                }
                if (momentum > 0)
                {
                    state.momentum_buffer.mul_(mu).addcdiv_(grad, avg, Scalars.One);
                    param.add_(state.momentum_buffer, rate);
                }
                else
                {
                    param.addcdiv_(grad, avg, rate);
                }
            }
        }, closure);
    }
}

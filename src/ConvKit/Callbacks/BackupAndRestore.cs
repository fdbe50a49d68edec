using ConvKit.Saving;
using static TorchSharp.torch;

namespace ConvKit.Callbacks;

/// <summary>
/// Keras' <c>BackupAndRestore(backup_dir)</c>: at the end of every epoch it writes a training checkpoint (weights,
/// optimizer state, learning rate, epoch, step, RNG states and the state of stateful callbacks such as
/// <see cref="EarlyStopping"/>, <see cref="ReduceLROnPlateau"/> and <see cref="ModelCheckpoint"/>; see
/// <see cref="TrainingCheckpoint"/>) to <c>backup_dir/checkpoint.safetensors</c>, atomically and keeping the previous
/// one as <c>checkpoint.prev.safetensors</c>. When Fit starts and a backup exists, it restores it and Fit continues
/// from the next epoch, so an interrupted run (exception, kill, power loss) ends with the same weights, learning rate
/// and stopping epoch as one that was never interrupted. Give Fit the same data, batch size, epochs, seed and
/// callbacks when resuming.
/// </summary>
/// <remarks>
/// Wherever it is in the callback list, the backup of an epoch is written once every callback's
/// <see cref="Callback.OnEpochEnd"/> has run, so it holds what they changed (a reduced learning rate, a patience
/// counter); an epoch whose end-of-epoch callbacks did not all finish is not backed up and runs again on resume.
/// Weights and optimizer are restored in <see cref="OnTrainBegin"/> (callbacks after this one see them); the
/// callbacks' states once every callback's OnTrainBegin, where they reset them, has run.
/// </remarks>
public sealed class BackupAndRestore : Callback
{
    readonly CheckpointStore store;
    List<(IStatefulCallback Callback, CallbackState State)>? pendingStates;

    /// <summary>Creates the callback.</summary>
    /// <param name="backupDir">Folder for the backups (created if missing); use one per training run.</param>
    /// <param name="deleteCheckpoint">Delete the backup when Fit finishes normally (Keras' default).</param>
    public BackupAndRestore(string backupDir, bool deleteCheckpoint = true)
    {
        Require.NotBlank(backupDir);
        BackupDir = backupDir;
        DeleteCheckpoint = deleteCheckpoint;
        store = new CheckpointStore(Path.Combine(backupDir, "checkpoint.safetensors"));
    }

    /// <summary>The backup folder.</summary>
    public string BackupDir { get; }

    /// <summary>Whether the backup is deleted when training finishes normally.</summary>
    public bool DeleteCheckpoint { get; }

    /// <summary>Path of the newest backup.</summary>
    public string CheckpointPath => store.LatestPath;

    /// <summary>The epoch training resumed from on the last Fit (null when it started fresh).</summary>
    public int? ResumedFromEpoch { get; private set; }

    /// <inheritdoc/>
    /// <exception cref="CheckpointException">A backup exists but neither it nor the previous one is valid, or it does not fit the model.</exception>
    public override void OnTrainBegin(Logs logs)
    {
        var model = RequireModel();
        ResumedFromEpoch = null;
        pendingStates = null;
        if (!File.Exists(store.LatestPath) && !File.Exists(store.PreviousPath)) return;
        var loaded = store.LoadLatestValid();
        var keep = new HashSet<Tensor>(ReferenceEqualityComparer.Instance);
        try
        {
            // A backup of epoch <= this Fit's initial epoch was written by an earlier Fit of the same run (e.g. the
            // frozen phase before fine-tuning): this Fit starts from where that one ended, with its own optimizer.
            if (model.FitInitialEpoch > 0 && TrainingCheckpoint.EpochOf(loaded.Metadata, loaded.Path) <= model.FitInitialEpoch) return;
            var states = TrainingCheckpoint.CallbackStates(model.FitCallbacks, loaded.Tensors, loaded.Metadata, loaded.Path);
            int epoch = TrainingCheckpoint.Restore(model, loaded.Tensors, loaded.Metadata, loaded.Path);
            model.ResumeInitialEpoch = epoch;
            ResumedFromEpoch = epoch;
            pendingStates = states;
            foreach (var (_, state) in states)
                foreach (var list in state.Tensors.Values) keep.UnionWith(list);
        }
        finally
        {
            foreach (var t in loaded.Tensors.Values)
                if (!keep.Contains(t)) t.Dispose();
        }
    }

    internal override void AfterTrainBegin()
    {
        if (pendingStates is not { } states) return;
        pendingStates = null;
        try
        {
            foreach (var (callback, state) in states) callback.LoadState(state);
        }
        finally
        {
            foreach (var (_, state) in states)
                foreach (var list in state.Tensors.Values)
                    foreach (var t in list) t.Dispose();
        }
    }

    internal override void AfterEpochEnd(int epoch)
    {
        var model = RequireModel();
        Directory.CreateDirectory(BackupDir);
        var (tensors, meta, owned) = TrainingCheckpoint.Capture(model, epoch + 1);
        try
        {
            store.Save(tensors, meta);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // The cause without the temp file's name: the checkpoint is what could not be written.
            throw new ConvKitException($"BackupAndRestore cannot write '{store.LatestPath}': {AtomicFile.Explain(e, store.LatestPath)}", e);
        }
        finally
        {
            foreach (var t in owned) t.Dispose();
        }
    }

    /// <inheritdoc/>
    public override void OnTrainEnd(Logs logs)
    {
        if (!DeleteCheckpoint) return;
        AtomicFile.TryDelete(store.LatestPath);
        AtomicFile.TryDelete(store.PreviousPath);
    }
}
